// Rewrites src/qapi/types.ts from src/qapi/schema.json (see src/qapi/gen-types.ts).
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { generateTypes } from '../src/qapi/gen-types.js';
import { schema } from '../src/qapi/schema.js';

const target = fileURLToPath(new URL('../src/qapi/types.ts', import.meta.url));
writeFileSync(target, generateTypes(schema));
console.log(`wrote ${target}`);
