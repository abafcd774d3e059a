/**
 * QEMU 10.0's scripts/analyze-migration.py as an oracle for `qmigrate analyze`: where
 * setup-qemu.sh put it, how to run it, and qmigrate's analysis rewritten in the script's
 * `-f` output format (its key names, its hex spellings), so the two compare with deepEqual.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { FieldValue, StreamAnalysis } from '../../src/migration/stream/analyze.js';
import type { DeviceDesc, StructDesc } from '../../src/migration/stream/vmdesc.js';
import { skipLoudly } from './qemu.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const SCRIPT = join(root, '.qemu/10.0-src/scripts/analyze-migration.py');

/** The script's path, or skips the test loudly (fails under QMIGRATE_REQUIRE_QEMU=1). */
export function requireScript(t: TestContext): string | undefined {
  if (existsSync(SCRIPT)) return SCRIPT;
  skipLoudly(t, `${SCRIPT} not found; run \`npm run setup:qemu\``);
  return undefined;
}

/** Runs the script with `args` in `cwd`; its stdout, or rejects with its stderr. */
export function runScript(args: string[], cwd: string): Promise<string> {
  return new Promise((res, rej) => {
    execFile('python3', [SCRIPT, ...args], { cwd, timeout: 60_000, maxBuffer: 256 << 20 }, (e, out, err) =>
      e ? rej(new Error(`analyze-migration.py ${args.join(' ')}: ${err}`)) : res(out),
    );
  });
}

/** The script's integer classes: these it reads signed (its table also puts `uint8 equal` there). */
const PY_SIGNED = new Set([
  'int8',
  'int16',
  'int32',
  'int32 equal',
  'int32 le',
  'int64',
  'int64 equal',
  'uint8 equal',
  'uint16 equal',
]);
const PY_UNSIGNED = new Set(['uint8', 'uint16', 'uint32', 'uint32 equal', 'uint64']);

/** One value as the script prints it: `0x%0Nx` (and ` (negative)` for signed), spaced hex. */
function pyScalar(v: FieldValue, type: string, size: number): unknown {
  if (PY_SIGNED.has(type) || PY_UNSIGNED.has(type)) {
    const bits = BigInt(size * 8);
    const u = BigInt.asUintN(Number(bits), BigInt(v as number | string));
    const hex = `0x${u.toString(16).padStart(size * 2, '0')}`;
    const s = BigInt.asIntN(Number(bits), u);
    return PY_SIGNED.has(type) && s < 0n ? `${hex} (${s})` : hex;
  }
  if (type === 'bool') return v;
  if (type === 'nullptr') return 'nullptr';
  if (type === 'capability') return v;
  return ((v as string).match(/../g) ?? []).join(' ');
}

/** A struct's fields in the script's shape, walking the description beside the values. */
function pyStruct(desc: StructDesc, fields: { [k: string]: FieldValue }): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const count = new Map<string, number>();
  for (const f of desc.fields ?? [])
    count.set(f.name, (count.get(f.name) ?? 0) + ((f as { array_len?: number }).array_len ?? 1));
  const seen = new Map<string, number>();
  const list = new Map<string, unknown[]>();
  for (const f of desc.fields ?? []) {
    const fd = f as { name: string; type: string; size: number; array_len?: number; struct?: StructDesc };
    for (let i = 0; i < (fd.array_len ?? 1); i++) {
      const k = seen.get(fd.name) ?? 0;
      seen.set(fd.name, k + 1);
      const raw = count.get(fd.name)! > 1 ? (fields[fd.name] as FieldValue[])[k]! : fields[fd.name]!;
      const v =
        fd.type === 'struct'
          ? pyStruct(fd.struct!, raw as { [k: string]: FieldValue })
          : pyScalar(raw, fd.type, fd.size);
      if (count.get(fd.name)! > 1) {
        if (!list.has(fd.name)) list.set(fd.name, []);
        list.get(fd.name)!.push(v);
        out[fd.name] = list.get(fd.name);
      } else out[fd.name] = v;
    }
  }
  for (const sub of desc.subsections ?? []) {
    out[sub.vmsd_name!] = pyStruct(sub, fields[sub.vmsd_name!] as { [k: string]: FieldValue });
  }
  return out;
}

/** qmigrate's analysis in the format of `analyze-migration.py -f FILE` (state). */
export function pyView(a: StreamAnalysis): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const devices = a.vmdescription?.json.devices ?? [];
  for (const s of a.sections) {
    if (s.kind !== 'start' && s.kind !== 'full') continue;
    const key = `${s.idstr} (${s['section-id']})`;
    if (s.idstr === 'ram') {
      const sizes: Record<string, string> = {};
      for (const b of a.ram!.blocks) sizes[b.name] = `0x${b.length.toString(16).padStart(16, '0')}`;
      out[key] = { 'section sizes': sizes };
      continue;
    }
    const dev = a.devices.find((d) => d.offset === s.offset)!;
    const desc = devices.find(
      (d: DeviceDesc) => d.name === s.idstr && d.instance_id === s['instance-id'],
    ) as DeviceDesc;
    out[key] = pyStruct(desc, dev.fields);
  }
  return out;
}
