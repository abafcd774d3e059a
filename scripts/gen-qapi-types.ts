// Rewrites the files generated from src/qapi/schema.json (see src/qapi/gen-types.ts).
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { generateMethods, generateTypes } from '../src/qapi/gen-types.js';
import { schema } from '../src/qapi/schema.js';

for (const [file, text] of [
  ['../src/qapi/types.ts', generateTypes(schema)],
  ['../src/qmp/methods.ts', generateMethods(schema)],
] as const) {
  const target = fileURLToPath(new URL(file, import.meta.url));
  writeFileSync(target, text);
  console.log(`wrote ${target}`);
}
