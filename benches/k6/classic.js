// The classic lab load test, as lab teams run it with k6 today: VUS virtual users (50),
// each sending one sample of every sensor type of the registry every 500 ms, for
// DURATION (60s), one sample per request. benches/run drives labstream with it so the
// figure compares with what those teams measure against their current backends.
//   k6 run -e URL=http://127.0.0.1:8080 -e TOKEN=... -e REGISTRY=schemas/registry/default.sensors.json benches/k6/classic.js
import http from 'k6/http';
import { check, sleep } from 'k6';

const URL = __ENV.URL || 'http://127.0.0.1:8080';
const TOKEN = __ENV.TOKEN || '';
const INTERVAL_S = Number(__ENV.INTERVAL_MS || 500) / 1000;
const REGISTRY = JSON.parse(open(__ENV.REGISTRY || '../../schemas/registry/default.sensors.json'));

export const options = {
  vus: Number(__ENV.VUS || 50),
  duration: __ENV.DURATION || '60s',
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
  thresholds: { checks: ['rate>0.999'] },
};

const TYPES = Object.entries(REGISTRY.sensor_types).map(([name, spec]) => ({
  name,
  fields: Object.entries(spec.fields).map(([field, f]) => [field, f.type]),
}));

function value(kind, i) {
  switch (kind) {
    case 'double': return 20 + (i % 100) / 10;
    case 'long': return i;
    case 'boolean': return i % 2 === 0;
    default: return `v${i % 10}`;
  }
}

const params = {
  headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}` },
  tags: { name: 'POST /v1/samples' },
};

export default function () {
  const started = Date.now();
  for (const t of TYPES) {
    const values = {};
    for (const [field, kind] of t.fields) values[field] = value(kind, __ITER);
    const body = JSON.stringify({
      sensor_id: `k6-vu${__VU}-${t.name}`,
      sensor_type: t.name,
      ts: new Date().toISOString(),
      seq: __ITER,
      values,
    });
    const r = http.post(`${URL}/v1/samples`, body, params);
    check(r, { 'accepted (202)': (res) => res.status === 202 });
  }
  const left = INTERVAL_S - (Date.now() - started) / 1000;
  if (left > 0) sleep(left);
}

// The whole summary as JSON for `labstream-loadgen import-k6` (k6's default text
// summary needs a remote module, which this machine cannot fetch).
export function handleSummary(data) {
  return { [__ENV.SUMMARY || 'k6-summary.json']: JSON.stringify(data, null, 2) };
}
