// helm-render: renders a Helm chart the way `helm template` does, for machines without Helm.
//
// Debian 12 ships no Helm, and this machine reaches no Go module proxy. Helm's templates are
// Go text/template plus the sprig function library plus a few functions of Helm's own
// (include, tpl, required, toYaml, fromYaml, toJson, lookup); Debian packages Go, sprig v3 and
// yaml.v3, so this program supplies the Helm functions and renders the chart with them:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o helm-render .
//	helm-render [-f values.yaml]... [-release NAME] [-namespace NS] CHART_DIR
//
// It also performs the checks `helm lint` is known for that need no cluster: Chart.yaml's
// required fields, every template renders (missing values are errors, as with --strict),
// every rendered document is YAML with apiVersion, kind and a DNS-1123 metadata.name.
// What it does not do: Helm's JSON-schema check of values (the chart has no
// values.schema.json), subcharts and dependencies (the chart has none), .Files, hooks.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

func die(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "helm-render: "+format+"\n", a...)
	os.Exit(1)
}

func readYAML(path string) map[string]interface{} {
	b, err := os.ReadFile(path)
	if err != nil {
		die("%v", err)
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		die("%s: %v", path, err)
	}
	return m
}

// merge overlays src onto dst the way Helm coalesces value files: maps merge key by key,
// anything else is replaced, and a null removes the key.
func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

var dns1123 = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func main() {
	var files valueFiles
	release := flag.String("release", "stratus", "release name")
	namespace := flag.String("namespace", "default", "namespace")
	flag.Var(&files, "f", "values file (repeatable, later files win)")
	flag.Parse()
	if flag.NArg() != 1 {
		die("usage: helm-render [-f values.yaml]... [-release NAME] [-namespace NS] CHART_DIR")
	}
	dir := flag.Arg(0)

	chart := readYAML(filepath.Join(dir, "Chart.yaml"))
	for _, k := range []string{"apiVersion", "name", "version"} {
		if _, ok := chart[k]; !ok {
			die("Chart.yaml: %s is required", k)
		}
	}
	if chart["apiVersion"] != "v2" {
		die("Chart.yaml: apiVersion must be v2 (Helm 3)")
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`).MatchString(fmt.Sprint(chart["version"])) {
		die("Chart.yaml: version %v is not SemVer 2", chart["version"])
	}
	if fmt.Sprint(chart["name"]) != filepath.Base(filepath.Clean(dir)) {
		die("Chart.yaml: name %v differs from the chart's directory", chart["name"])
	}
	values := readYAML(filepath.Join(dir, "values.yaml"))
	for _, f := range files {
		values = merge(values, readYAML(f))
	}
	str := func(k string) string {
		if v, ok := chart[k]; ok {
			return fmt.Sprint(v)
		}
		return ""
	}
	top := map[string]interface{}{
		"Values": values,
		"Chart": map[string]interface{}{
			"Name": str("name"), "Version": str("version"), "AppVersion": str("appVersion"),
			"Description": str("description"), "Type": str("type"), "KubeVersion": str("kubeVersion"),
		},
		"Release": map[string]interface{}{
			"Name": *release, "Namespace": *namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": "v1.29.0", "Major": "1", "Minor": "29"},
		},
	}

	tpl := template.New("chart")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env") // Helm removes these two: a chart must not read the renderer's environment
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		_ = yaml.Unmarshal([]byte(s), &m)
		return m
	}
	funcs["toJson"] = func(v interface{}) string { b, _ := json.Marshal(v); return string(b) }
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := tpl.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := tpl.Clone()
		if err == nil {
			t, err = t.New("tpl").Parse(text)
		}
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return buf.String(), err
	}
	funcs["lookup"] = func(...interface{}) map[string]interface{} { return map[string]interface{}{} }
	funcs["sha256sum"] = func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	tpl.Funcs(funcs).Option("missingkey=error")

	paths, _ := filepath.Glob(filepath.Join(dir, "templates", "*"))
	sort.Strings(paths)
	var names []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			die("%v", err)
		}
		name := filepath.Join(str("name"), "templates", filepath.Base(p))
		if _, err := tpl.New(name).Parse(string(b)); err != nil {
			die("%v", err)
		}
		if !strings.HasPrefix(filepath.Base(p), "_") {
			names = append(names, name)
		}
	}
	var out bytes.Buffer
	docs := 0
	for _, name := range names {
		// A template's own .Template.BasePath, as Helm provides it.
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": name, "BasePath": filepath.Join(str("name"), "templates")}
		var buf bytes.Buffer
		if err := tpl.ExecuteTemplate(&buf, name, data); err != nil {
			die("%v", err)
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.HasSuffix(name, "NOTES.txt") || strings.TrimSpace(text) == "" {
			continue
		}
		for _, doc := range strings.Split(text, "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var obj map[string]interface{}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				die("%s: rendered YAML does not parse: %v\n%s", name, err, doc)
			}
			if obj == nil {
				continue // only comments
			}
			meta, _ := obj["metadata"].(map[string]interface{})
			if obj["apiVersion"] == nil || obj["kind"] == nil || meta == nil || meta["name"] == nil {
				die("%s: a document lacks apiVersion, kind or metadata.name", name)
			}
			if n := fmt.Sprint(meta["name"]); len(n) > 63 || !dns1123.MatchString(n) {
				die("%s: metadata.name %q is not a DNS-1123 name of at most 63 characters", name, n)
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, strings.Trim(doc, "\n"))
			docs++
		}
	}
	os.Stdout.Write(out.Bytes())
	fmt.Fprintf(os.Stderr, "helm-render: %d documents from %d templates\n", docs, len(names))
}
