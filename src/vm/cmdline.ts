/**
 * `qmigrate vm`'s command line: the part of qemu-system-x86_64's options a RAM-only guest
 * needs (system/vl.c, qemu-options.hx), so scripts can swap one binary for the other.
 * Unknown or unsupported options are refused with QEMU's wording.
 */
import { strtosz } from '../qapi/cutils.js';
import { type Chardev, ChardevError, parseChardev, parseCompatChardev, parseMon } from './chardev.js';

export interface MemoryBackend {
  id: string;
  type: 'memory-backend-ram' | 'memory-backend-file';
  size: bigint;
  memPath?: string;
  share: boolean;
}

/** qmigrate's own guest workload object (`-object qmigrate-workload,...`). */
export interface WorkloadSpec {
  /** Pages written per second (0: as fast as possible). */
  rate: number;
}

export interface VmConfig {
  ramSize: bigint;
  /** Whether -m was given (else ramSize is QEMU's default, 128 MiB). */
  ramSizeGiven: boolean;
  /** `-machine none,memory-backend=ID`. */
  memoryBackend?: string;
  backends: MemoryBackend[];
  incoming?: string;
  startPaused: boolean;
  name?: string;
  /** `spec`: the option that gave the chardev, named in its errors (-chardev for -mon). */
  monitors: { dev: Chardev; mode: 'control' | 'readline'; spec: string }[];
  /** `-add-fd fd=N,set=M[,opaque=S]`: fds inherited from the parent. */
  addFds: { fd: number; set: number; opaque?: string }[];
  workload?: WorkloadSpec;
}

export class UsageError extends Error {}

const NO_ARG = new Set(['-S', '-nodefaults', '-no-user-config', '-no-shutdown', '-no-reboot']);
const WITH_ARG = new Set([
  '-machine',
  '-M',
  '-m',
  '-object',
  '-incoming',
  '-qmp',
  '-qmp-pretty',
  '-monitor',
  '-chardev',
  '-mon',
  '-display',
  '-name',
  '-add-fd',
  '-accel',
  '-L',
  '-serial',
  '-vga',
]);

const SIZE_HELP =
  "Parameter 'size' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.";

/** `k=v,k=v` with an implied first key. */
function keyval(text: string, implied?: string): Map<string, string> {
  const m = new Map<string, string>();
  text.split(',').forEach((part, i) => {
    const eq = part.indexOf('=');
    if (eq < 0) m.set(i === 0 && implied ? implied : part, i === 0 && implied ? part : 'on');
    else m.set(part.slice(0, eq), part.slice(eq + 1));
  });
  return m;
}

function onOff(v: string | undefined, name: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (v === 'on' || v === 'true' || v === 'yes') return true;
  if (v === 'off' || v === 'false' || v === 'no') return false;
  throw new Error(`Parameter '${name}' expects 'on' or 'off'`);
}

function size(text: string, defaultSuffix: 'B' | 'M'): bigint {
  const r = strtosz(text, defaultSuffix);
  if (!r.ok) throw new Error(SIZE_HELP);
  return r.value;
}

/**
 * Parses the options after `qmigrate vm`.
 * @throws {UsageError} `OPTION ARG: message`, as QEMU prints it after its program name.
 */
export function parseVmArgs(argv: readonly string[]): VmConfig {
  const cfg: VmConfig = {
    ramSize: 128n << 20n,
    ramSizeGiven: false,
    backends: [],
    startPaused: false,
    monitors: [],
    addFds: [],
  };
  const chardevs = new Map<string, Chardev>();
  /** Where each chardev was given: QEMU names that option when opening it fails. */
  const chardevSpecs = new Map<Chardev, string>();
  const mons: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i]!;
    const opt = raw.startsWith('--') ? raw.slice(1) : raw;
    if (NO_ARG.has(opt)) {
      if (opt === '-S') cfg.startPaused = true;
      continue;
    }
    if (!WITH_ARG.has(opt)) throw new UsageError(`${raw}: invalid option`);
    const arg = argv[++i];
    if (arg === undefined) throw new UsageError(`${raw}: requires an argument`);
    const where = `${raw} ${arg}`;
    try {
      switch (opt) {
        case '-machine':
        case '-M': {
          const kv = keyval(arg, 'type');
          const type = kv.get('type');
          if (type !== 'none' && type !== undefined) {
            throw new UsageError(
              `unsupported machine type: "${type}"\nUse -machine help to list supported machines`,
            );
          }
          for (const [k, v] of kv) {
            if (k === 'memory-backend') cfg.memoryBackend = v;
            else if (k !== 'type' && k !== 'accel') throw new Error(`Property 'none-machine.${k}' not found`);
          }
          break;
        }
        case '-m': {
          const kv = keyval(arg, 'size');
          cfg.ramSize = size(kv.get('size') ?? '', 'M');
          cfg.ramSizeGiven = true;
          break;
        }
        case '-object': {
          const kv = keyval(arg, 'qom-type');
          const type = kv.get('qom-type')!;
          const id = kv.get('id');
          if (type === 'qmigrate-workload') {
            cfg.workload = { rate: Number(kv.get('rate') ?? '0') };
            if (!Number.isFinite(cfg.workload.rate) || cfg.workload.rate < 0) {
              throw new Error("Parameter 'rate' expects a non-negative number of pages per second");
            }
            break;
          }
          if (type !== 'memory-backend-ram' && type !== 'memory-backend-file') {
            throw new Error(`invalid object type: ${type}`);
          }
          if (!id) throw new Error("Parameter 'id' is missing");
          const s = kv.get('size');
          if (s === undefined) throw new Error("can't create backend with size 0");
          const b: MemoryBackend = {
            id,
            type,
            size: size(s, 'B'),
            share: onOff(kv.get('share'), 'share', false),
          };
          if (type === 'memory-backend-file') {
            b.memPath = kv.get('mem-path');
            if (!b.memPath) throw new Error('mem-path property not set');
          }
          for (const k of kv.keys()) {
            if (!['qom-type', 'id', 'size', 'share', 'mem-path', 'prealloc', 'merge', 'dump'].includes(k)) {
              throw new Error(`Property '${type}.${k}' not found`);
            }
          }
          cfg.backends.push(b);
          break;
        }
        case '-incoming':
          cfg.incoming = arg;
          break;
        case '-qmp':
        case '-qmp-pretty':
          cfg.monitors.push({ dev: parseCompatChardev(arg), mode: 'control', spec: where });
          break;
        case '-monitor':
          if (arg !== 'none')
            cfg.monitors.push({ dev: parseCompatChardev(arg), mode: 'readline', spec: where });
          break;
        case '-chardev': {
          const { id, dev } = parseChardev(arg);
          if (chardevs.has(id))
            throw new Error(`attempt to add duplicate property 'id' to object (type 'container')`);
          chardevs.set(id, dev);
          chardevSpecs.set(dev, where);
          break;
        }
        case '-mon':
          mons.push(arg);
          break;
        case '-display':
          if (arg.split(',')[0] !== 'none') throw new Error(`Display '${arg}' is not available.`);
          break;
        case '-name':
          cfg.name = keyval(arg, 'guest').get('guest');
          break;
        case '-add-fd': {
          const kv = keyval(arg);
          const fd = Number(kv.get('fd'));
          const set = Number(kv.get('set'));
          if (!kv.has('fd') || !Number.isInteger(fd)) throw new Error("parameter 'fd' missing");
          if (!kv.has('set') || !Number.isInteger(set)) throw new Error("parameter 'set' missing");
          cfg.addFds.push({ fd, set, opaque: kv.get('opaque') });
          break;
        }
        default:
          // -accel, -L, -serial, -vga: accepted for compatibility, meaningless here.
          break;
      }
    } catch (e) {
      if (e instanceof UsageError) throw e;
      // QEMU prefixes every line of a chardev error, only the first line of the others.
      const [first, ...rest] = (e as Error).message.split('\n');
      if (e instanceof ChardevError) {
        throw new UsageError([first, ...rest].map((l) => `${where}: ${l}`).join('\nqmigrate: '));
      }
      throw new UsageError([`${where}: ${first}`, ...rest].join('\n'));
    }
  }
  for (const m of mons) {
    try {
      const mon = parseMon(m, chardevs);
      cfg.monitors.push({ ...mon, spec: chardevSpecs.get(mon.dev) ?? `-mon ${m}` });
    } catch (e) {
      throw new UsageError(`-mon ${m}: ${(e as Error).message}`);
    }
  }
  return cfg;
}
