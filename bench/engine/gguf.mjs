// A minimal GGUF header reader for the bench reports: the model's real parameter count (the sum
// of every tensor's element count), its tensor types and a few shape keys, read from the file
// itself rather than from a preset's name. Reads only the header (metadata and tensor infos),
// in chunks, never the tensor data. Format: GGUF v2/v3, little-endian (ggml's docs/gguf.md).
//   node gguf.mjs FILE     # prints one JSON line
import { openSync, readSync, closeSync, fstatSync } from 'node:fs';

// Byte sizes of the scalar metadata types; 8 (string) and 9 (array) are read separately.
const SCALAR = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
// ggml_type ids of the types our generated models and common quantisations use.
const TYPE_NAME = { 0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0',
  10: 'Q2_K', 11: 'Q3_K', 12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K', 30: 'BF16' };

export function readGguf(path) {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    let buf = Buffer.alloc(0), base = 0, pos = 0; // buf holds file bytes [base, base + length)
    const need = (n) => {
      if (pos + n <= base + buf.length) return;
      // keep the unread tail (none if a skip jumped past it), then read at least 1 MiB more
      buf = pos < base + buf.length ? buf.subarray(pos - base) : Buffer.alloc(0);
      base = pos;
      const want = Math.max(n - buf.length, 1 << 20);
      const chunk = Buffer.alloc(want);
      const got = readSync(fd, chunk, 0, want, base + buf.length);
      buf = Buffer.concat([buf, chunk.subarray(0, got)]);
      if (pos + n > base + buf.length) throw new Error(`${path}: truncated GGUF header`);
    };
    const u32 = () => { need(4); const v = buf.readUInt32LE(pos - base); pos += 4; return v; };
    const u64 = () => { need(8); const v = buf.readBigUInt64LE(pos - base); pos += 8; return Number(v); };
    const str = () => { const n = u64(); need(n); const s = buf.toString('utf8', pos - base, pos - base + n); pos += n; return s; };
    const scalar = (t) => {
      need(SCALAR[t]);
      const o = pos - base;
      pos += SCALAR[t];
      switch (t) {
        case 0: return buf.readUInt8(o); case 1: return buf.readInt8(o);
        case 2: return buf.readUInt16LE(o); case 3: return buf.readInt16LE(o);
        case 4: return buf.readUInt32LE(o); case 5: return buf.readInt32LE(o);
        case 6: return buf.readFloatLE(o); case 7: return buf.readUInt8(o) !== 0;
        case 10: return Number(buf.readBigUInt64LE(o)); case 11: return Number(buf.readBigInt64LE(o));
        default: return buf.readDoubleLE(o);
      }
    };
    const value = (t) => {
      if (t === 8) return str();
      if (t === 9) { // arrays are skipped, only their length is kept (a vocabulary is 32k strings)
        const et = u32(), n = u64();
        if (et === 8) for (let i = 0; i < n; i++) str();
        else if (SCALAR[et]) pos += n * SCALAR[et];
        else for (let i = 0; i < n; i++) value(et);
        return { array_length: n };
      }
      if (!(t in SCALAR)) throw new Error(`${path}: unknown GGUF metadata type ${t}`);
      return scalar(t);
    };

    need(4);
    if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${path}: not a GGUF file`);
    pos = 4;
    const version = u32(), nTensors = u64(), nKv = u64();
    const kv = {};
    for (let i = 0; i < nKv; i++) { const k = str(); kv[k] = value(u32()); }
    let params = 0;
    const types = {};
    for (let i = 0; i < nTensors; i++) {
      str(); // name
      const dims = u32();
      let n = 1;
      for (let d = 0; d < dims; d++) n *= u64();
      const t = u32();
      u64(); // offset into the data section
      params += n;
      const name = TYPE_NAME[t] ?? `type${t}`;
      types[name] = (types[name] ?? 0) + n;
    }
    const arch = kv['general.architecture'];
    return {
      path, version, file_bytes: size, tensors: nTensors, params, types, arch,
      embedding: kv[`${arch}.embedding_length`], layers: kv[`${arch}.block_count`],
      vocab: kv['tokenizer.ggml.tokens']?.array_length,
    };
  } finally {
    closeSync(fd);
  }
}

// "134.1M parameters (F32), 768-wide, 12 layers, 32000 vocab, 537 MB file"
export function describeGguf(g) {
  const m = (x) => (x >= 1e9 ? `${(x / 1e9).toFixed(2)}B` : `${(x / 1e6).toFixed(1)}M`);
  const types = Object.entries(g.types).sort((a, b) => b[1] - a[1]).map(([t]) => t).join('/');
  return `${m(g.params)} parameters (${types}), ${g.embedding}-wide, ${g.layers} layers, ` +
    `${g.vocab} vocab, ${(g.file_bytes / 1e6).toFixed(0)} MB file`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const g = readGguf(process.argv[2]);
  console.log(JSON.stringify({ ...g, summary: describeGguf(g) }));
}
