/** Loads every fuzz target of test/fuzz/targets/ (files other than target.ts export `targets`). */
import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { FuzzTarget } from '../test/fuzz/targets/target.js';

const dir = fileURLToPath(new URL('../test/fuzz/targets/', import.meta.url));

/** The targets, sorted by name; `only` keeps those whose name it matches. */
export async function loadTargets(only?: RegExp): Promise<FuzzTarget[]> {
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts') && f !== 'target.ts');
  const all: FuzzTarget[] = [];
  for (const f of files.sort()) {
    const mod = (await import(pathToFileURL(`${dir}${f}`).href)) as { targets?: FuzzTarget[] };
    if (!mod.targets) throw new Error(`${f}: exports no 'targets'`);
    all.push(...mod.targets);
  }
  return all.filter((t) => !only || only.test(t.name)).sort((a, b) => a.name.localeCompare(b.name));
}
