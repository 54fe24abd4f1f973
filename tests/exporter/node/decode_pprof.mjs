// Decodes a gzip pprof file with the npm `pprof-format` package (a decoder we did not write)
// and prints a JSON summary: sample types, totals per value column, function names, labels.
//   node decode_pprof.mjs <file.pb.gz>
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';

const bytes = gunzipSync(readFileSync(process.argv[2]));
const p = Profile.decode(bytes);
const str = (i) => p.stringTable.strings[Number(i)];
const totals = p.sampleType.map(() => 0);
const labelKeys = new Set();
for (const s of p.sample) {
  s.value.forEach((v, i) => { totals[i] += Number(v); });
  for (const l of s.label) labelKeys.add(str(l.key));
}
console.log(JSON.stringify({
  sampleTypes: p.sampleType.map((t) => `${str(t.type)}/${str(t.unit)}`),
  periodType: `${str(p.periodType.type)}/${str(p.periodType.unit)}`,
  period: Number(p.period),
  timeNanos: String(p.timeNanos),
  durationNanos: Number(p.durationNanos),
  totals,
  samples: p.sample.length,
  functions: [...new Set(p.function.map((f) => str(f.name)))].sort(),
  buildIds: [...new Set(p.mapping.map((m) => str(m.buildId)))].sort(),
  labelKeys: [...labelKeys].sort(),
}));
