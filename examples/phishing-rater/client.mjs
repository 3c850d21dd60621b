// Rates an email with the phishing-rater function through the official AWS Lambda client:
// code written for Lambda changes only its endpoint. Usage:
//   STRATUS_URL=http://127.0.0.1:8080 node examples/phishing-rater/client.mjs [email.json]
import { readFileSync } from 'node:fs';
import { LambdaClient, InvokeCommand } from '@aws-sdk/client-lambda';

const email = process.argv[2] ? JSON.parse(readFileSync(process.argv[2], 'utf8'))
  : { from: 'security@paypa1-alerts.example', subject: 'Account locked', body: 'Verify within 24h: http://paypa1.example/login' };
const lambda = new LambdaClient({
  endpoint: process.env.STRATUS_URL ?? 'http://127.0.0.1:8080',
  region: process.env.AWS_REGION ?? 'us-east-1',
  // A key made with `stratus keys create --aws` when auth is on; any values when it is off.
  credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? 'local', secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? 'local' },
});
const out = await lambda.send(new InvokeCommand({ FunctionName: 'phishing-rater', Payload: JSON.stringify(email) }));
const answer = JSON.parse(Buffer.from(out.Payload).toString());
if (out.FunctionError) throw new Error(`${answer.errorType}: ${answer.errorMessage}`);
console.log(`${answer.label} (p=${answer.score.toFixed(3)}, ${answer.score_source}, ${answer.backend}, ${answer.latency_ms.toFixed(1)} ms)`);
