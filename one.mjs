import http from 'node:http';
const [port, n, maxTok, conc='1'] = process.argv.slice(2);
function one() {
  return new Promise((res, rej) => {
    const t0 = performance.now(); let first = null, last = null, count = 0;
    const req = http.request({ host: '127.0.0.1', port: Number(port), path: '/v1/chat/completions', method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (r) => {
      r.setEncoding('utf8');
      r.on('data', (d) => { const now = performance.now(); if (first === null) first = now; last = now; count += (d.match(/"content"/g) || []).length; });
      r.on('end', () => res({ ttft: first - t0, rate: (count - 1) / ((last - first) / 1000), count }));
    });
    req.on('error', rej);
    req.end(JSON.stringify({ model: 'm', stream: true, temperature: 0, max_tokens: Number(maxTok), ignore_eos: true, messages: [{ role: 'user', content: 'Write a long story about a lighthouse keeper and the sea, with many details about the weather and the boats.' }] }));
  });
}
const out = [];
for (let i = 0; i < Number(n); i++) { const rs = await Promise.all(Array.from({ length: Number(conc) }, one)); out.push(...rs); }
const rates = out.map((r) => r.rate).sort((a, b) => a - b);
console.log(JSON.stringify({ rate_p50: rates[rates.length >> 1].toFixed(0), ttft: out.map(r => r.ttft.toFixed(1)).slice(0, 5) }));
