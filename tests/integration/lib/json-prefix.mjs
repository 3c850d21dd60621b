// Whether `text` is a prefix of some valid JSON document (RFC 8259) — the property a
// grammar-constrained generation has even when max_tokens cuts it short. A small state
// machine over characters: a stack of open containers and what may come next.
export function isJsonPrefix(text) {
  const stack = []; // '{' or '['
  let want = 'value'; // value | key | colon | comma-or-close | key-or-close | value-or-close | done
  let inString = false, escape = false, hex = 0, isKey = false, literal = '', number = '';
  const afterValue = () => { want = stack.length ? 'comma-or-close' : 'done'; };
  const ws = (c) => c === ' ' || c === '\t' || c === '\n' || c === '\r';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (hex) { if (!/[0-9a-fA-F]/.test(c)) return false; hex--; continue; }
      if (escape) { if (c === 'u') hex = 4; else if (!'"\\/bfnrt'.includes(c)) return false; escape = false; continue; }
      if (c === '\\') { escape = true; continue; }
      if (c === '"') { inString = false; if (isKey) want = 'colon'; else afterValue(); continue; }
      if (c < ' ') return false;
      continue;
    }
    if (literal) { // inside true/false/null
      const full = literal[0] === 't' ? 'true' : literal[0] === 'f' ? 'false' : 'null';
      if (full[literal.length] === c) { literal += c; if (literal === full) { literal = ''; afterValue(); } continue; }
      return false;
    }
    if (number) {
      if (/[0-9eE.+-]/.test(c)) { number += c; continue; }
      if (!/^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(number)) return false;
      number = '';
      afterValue();
    }
    if (ws(c)) continue;
    const valueStart = want === 'value' || want === 'value-or-close';
    if (valueStart && c === ']' && want === 'value-or-close') { stack.pop(); afterValue(); continue; }
    if (valueStart && c === '{') { stack.push('{'); want = 'key-or-close'; continue; }
    if (valueStart && c === '[') { stack.push('['); want = 'value-or-close'; continue; }
    if (valueStart && c === '"') { inString = true; isKey = false; continue; }
    if (valueStart && 'tfn'.includes(c)) { literal = c; continue; }
    if (valueStart && /[-0-9]/.test(c)) { number = c; continue; }
    if ((want === 'key' || want === 'key-or-close') && c === '"') { inString = true; isKey = true; continue; }
    if (want === 'key-or-close' && c === '}') { stack.pop(); afterValue(); continue; }
    if (want === 'colon' && c === ':') { want = 'value'; continue; }
    if (want === 'comma-or-close') {
      const top = stack[stack.length - 1];
      if (c === ',') { want = top === '{' ? 'key' : 'value'; continue; }
      if ((c === '}' && top === '{') || (c === ']' && top === '[')) { stack.pop(); afterValue(); continue; }
    }
    return false;
  }
  return !number || /^-?(0|[1-9]\d*)?(\.\d*)?([eE][+-]?\d*)?$/.test(number);
}
