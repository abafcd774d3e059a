/**
 * `migrate_set_parameter NAME VALUE`: how QEMU 10.0's HMP turns the value text into a
 * MigrateSetParameters member before calling QMP, with the string input visitor's error
 * texts (qemu/qemu: migration/migration-hmp-cmds.c hmp_migrate_set_parameter,
 * qapi/string-input-visitor.c, qapi/qapi-visit-core.c, util/qemu-option.c
 * parse_option_size, util/cutils.c qemu_strtou64 and qemu_strtosz_MiB).
 */
import { strtosz } from '../qapi/cutils.js';
import { intValue } from '../qapi/json.js';
import { schema } from '../qapi/schema.js';

const INT64_MAX = (1n << 63n) - 1n;
const UINT64_MAX = (1n << 64n) - 1n;

/** How HMP reads each parameter's value (not always the member's QAPI type). */
type ValueKind =
  | { kind: 'uint'; bits: 8 | 32 }
  | { kind: 'bool' }
  | { kind: 'str' }
  | { kind: 'size' }
  | { kind: 'xbzrle-size' }
  | { kind: 'mib' }
  | { kind: 'enum'; type: string }
  | { kind: 'qmp-only' };

const U8 = { kind: 'uint', bits: 8 } as const;
const SIZE = { kind: 'size' } as const;

/** QEMU 10.0's MigrationParameter enum, in order, with the visitor HMP uses for each. */
export const MIGRATION_PARAMETERS: readonly (readonly [string, ValueKind])[] = [
  ['announce-initial', SIZE],
  ['announce-max', SIZE],
  ['announce-rounds', SIZE],
  ['announce-step', SIZE],
  ['throttle-trigger-threshold', U8],
  ['cpu-throttle-initial', U8],
  ['cpu-throttle-increment', U8],
  ['cpu-throttle-tailslow', { kind: 'bool' }],
  ['tls-creds', { kind: 'str' }],
  ['tls-hostname', { kind: 'str' }],
  ['tls-authz', { kind: 'str' }],
  // A bare number means MiB/s here, unlike visit_type_size.
  ['max-bandwidth', { kind: 'mib' }],
  ['avail-switchover-bandwidth', { kind: 'mib' }],
  ['downtime-limit', SIZE],
  ['x-checkpoint-delay', { kind: 'uint', bits: 32 }],
  ['multifd-channels', U8],
  ['xbzrle-cache-size', { kind: 'xbzrle-size' }],
  ['max-postcopy-bandwidth', SIZE],
  ['max-cpu-throttle', U8],
  ['multifd-compression', { kind: 'enum', type: 'MultiFDCompression' }],
  ['multifd-zlib-level', U8],
  ['multifd-zstd-level', U8],
  ['multifd-qatzip-level', U8],
  ['block-bitmap-mapping', { kind: 'qmp-only' }],
  ['x-vcpu-dirty-limit-period', SIZE],
  ['vcpu-dirty-limit', SIZE],
  ['mode', { kind: 'enum', type: 'MigMode' }],
  ['zero-page-detection', { kind: 'enum', type: 'ZeroPageDetection' }],
  ['direct-io', { kind: 'bool' }],
];

/** The names `migrate_set_parameter` accepts (qapi_enum_parse on MigrationParameter). */
export const PARAMETER_NAMES: readonly string[] = MIGRATION_PARAMETERS.map(([n]) => n);

/** An HMP-side error: the message, and the hint QEMU's error_report_err adds below it. */
export interface HmpError {
  message: string;
  hint?: string;
}

/**
 * qemu_strtou64(str, NULL, 0): glibc strtoull with base auto-detection (0x hex, leading-0
 * octal), leading spaces and a sign allowed (negatives wrap), whole string consumed.
 */
export function strtou64(s: string): bigint | undefined {
  let p = 0;
  while (p < s.length && ' \t\n\v\f\r'.includes(s[p]!)) p++;
  let neg = false;
  if (s[p] === '+' || s[p] === '-') neg = s[p++] === '-';
  let base = 10;
  if (s[p] === '0' && (s[p + 1] === 'x' || s[p + 1] === 'X') && /[0-9a-fA-F]/.test(s[p + 2] ?? '')) {
    base = 16;
    p += 2;
  } else if (s[p] === '0') base = 8;
  const digit = base === 16 ? /[0-9a-fA-F]/ : base === 8 ? /[0-7]/ : /[0-9]/;
  const start = p;
  while (p < s.length && digit.test(s[p]!)) p++;
  if (p === start || p !== s.length) return undefined;
  const prefix = base === 16 ? '0x' : base === 8 ? '0o' : '';
  const v = BigInt(prefix + s.slice(start, p));
  if (v > UINT64_MAX) return undefined;
  return neg ? (UINT64_MAX + 1n - v) & UINT64_MAX : v;
}

/** qapi_bool_parse(), which the string input visitor uses for booleans. */
function parseBool(name: string, s: string): boolean | HmpError {
  if (['on', 'yes', 'true', 'y'].includes(s)) return true;
  if (['off', 'no', 'false', 'n'].includes(s)) return false;
  return { message: `Parameter '${name}' expects 'on' or 'off'` };
}

/** parse_option_size(), behind the string input visitor's visit_type_size. */
function parseSize(name: string, s: string): bigint | HmpError {
  const r = strtosz(s);
  if (r.ok) return r.value;
  if (r.errno === 'Numerical result out of range')
    return { message: `Value '${s}' is out of range for parameter '${name}'` };
  return {
    message: `Parameter '${name}' expects a non-negative number below 2^64`,
    hint: 'Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.\n',
  };
}

function isError(v: unknown): v is HmpError {
  return typeof v === 'object' && v !== null && 'message' in v;
}

/**
 * The `migrate-set-parameters` arguments for `migrate_set_parameter name value`, or the error
 * HMP reports before calling QMP. Strings are JS strings (decoded from the byte input).
 */
export function parameterArgs(
  name: string,
  value: string,
): { ok: true; args: Record<string, unknown> } | { ok: false; error: HmpError } {
  const fail = (error: HmpError) => ({ ok: false, error }) as const;
  const entry = MIGRATION_PARAMETERS.find(([n]) => n === name);
  if (!entry) return fail({ message: `invalid parameter value: ${name}` });
  const kind = entry[1];
  let v: unknown;
  switch (kind.kind) {
    case 'uint': {
      const n = strtou64(value);
      if (n === undefined) return fail({ message: `Parameter '${name}' expects uint64` });
      if (n >= 1n << BigInt(kind.bits))
        return fail({ message: `Parameter '${name}' expects uint${kind.bits}_t` });
      v = Number(n);
      break;
    }
    case 'bool':
      v = parseBool(name, value);
      break;
    case 'str':
      v = value;
      break;
    case 'size': {
      const n = parseSize(name, value);
      v = typeof n === 'bigint' ? intValue(n) : n;
      break;
    }
    case 'xbzrle-size': {
      const n = parseSize(name, value);
      if (typeof n !== 'bigint') return fail(n);
      if (n > INT64_MAX) return fail({ message: `Invalid size ${value}` });
      v = intValue(n);
      break;
    }
    case 'mib': {
      const r = strtosz(value, 'M');
      if (!r.ok || r.value > INT64_MAX) return fail({ message: `Invalid size ${value}` });
      v = intValue(r.value);
      break;
    }
    case 'enum':
      if (!schema.enumValues(kind.type).includes(value))
        return fail({ message: `Parameter '${name}' does not accept value '${value}'` });
      v = value;
      break;
    case 'qmp-only':
      return fail({ message: 'The block-bitmap-mapping parameter can only be set through QMP' });
  }
  if (isError(v)) return fail(v);
  return { ok: true, args: { [name]: v } };
}
