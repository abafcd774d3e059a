/**
 * The text of QEMU 10.0's migration `info` commands, built from QMP results: `info migrate`
 * in its pre-10.1 layout (globals block, then `key: value` lines), `info
 * migrate_capabilities`, `info migrate_parameters`, `info status` and `info version`
 * (qemu/qemu: migration/migration-hmp-cmds.c, monitor/hmp-cmds.c, qapi/string-output-visitor.c),
 * and `info memdev` (hw/core/machine-hmp-cmds.c).
 * Output is a JS string with `\n` line ends; the monitor turns them into `\r\n`.
 */
import type {
  Memdev,
  MigrationCapabilityStatus,
  MigrationInfo,
  MigrationParameters,
  StatusInfo,
  VersionInfo,
} from '../qapi/types.js';
import { socketAddressToString } from '../qapi/uri.js';
import { fixed2, numeric, u64 } from './bytes.js';

/**
 * The `globals:` block. These are properties of QEMU's migration object, which QMP does not
 * expose; the values are QEMU 10.0's defaults, which a `-machine none` guest keeps (older
 * machine types and `-global migration.*` / `-only-migratable` change them).
 */
const GLOBALS =
  'globals:\n' +
  'store-global-state: on\n' +
  'only-migratable: off\n' +
  'send-configuration: on\n' +
  'send-section-footer: on\n' +
  'send-switchover-start: on\n' +
  'clear-bitmap-shift: 18\n';

const kib = (v: unknown) => (u64(v) >> 10n).toString();
const dec = (v: unknown) => u64(v).toString();
const nonZero = (v: unknown) => u64(v) !== 0n;

/**
 * The string output visitor's rendering of an integer list: sorted, duplicates merged and
 * runs of consecutive values written as `a-b`.
 */
export function uintListString(values: readonly unknown[]): string {
  const sorted = [...new Set(values.map((v) => u64(v)))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1n) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** hmp_info_migrate(). */
export function formatInfoMigrate(info: MigrationInfo): string {
  let s = GLOBALS;
  if (info['blocked-reasons']) {
    s += 'Outgoing migration blocked:\n';
    for (const r of info['blocked-reasons']) s += `  ${r}\n`;
  }
  if (info.status !== undefined) {
    s += `Migration status: ${info.status}`;
    s += info.status === 'failed' && info['error-desc'] !== undefined ? ` (${info['error-desc']})\n` : '\n';
    // An absent total-time reads as 0 in C, and the line is printed regardless.
    s += `total time: ${dec(info['total-time'] ?? 0)} ms\n`;
    if (info['expected-downtime'] !== undefined)
      s += `expected downtime: ${dec(info['expected-downtime'])} ms\n`;
    if (info.downtime !== undefined) s += `downtime: ${dec(info.downtime)} ms\n`;
    if (info['setup-time'] !== undefined) s += `setup: ${dec(info['setup-time'])} ms\n`;
  }
  const ram = info.ram;
  if (ram) {
    s += `transferred ram: ${kib(ram.transferred)} kbytes\n`;
    s += `throughput: ${fixed2(ram.mbps)} mbps\n`;
    s += `remaining ram: ${kib(ram.remaining)} kbytes\n`;
    s += `total ram: ${kib(ram.total)} kbytes\n`;
    s += `duplicate: ${dec(ram.duplicate)} pages\n`;
    s += `normal: ${dec(ram.normal)} pages\n`;
    s += `normal bytes: ${kib(ram['normal-bytes'])} kbytes\n`;
    s += `dirty sync count: ${dec(ram['dirty-sync-count'])}\n`;
    s += `page size: ${kib(ram['page-size'])} kbytes\n`;
    s += `multifd bytes: ${kib(ram['multifd-bytes'])} kbytes\n`;
    s += `pages-per-second: ${dec(ram['pages-per-second'])}\n`;
    if (nonZero(ram['dirty-pages-rate'])) s += `dirty pages rate: ${dec(ram['dirty-pages-rate'])} pages\n`;
    if (nonZero(ram['postcopy-requests'])) s += `postcopy request count: ${dec(ram['postcopy-requests'])}\n`;
    if (nonZero(ram['precopy-bytes'])) s += `precopy ram: ${kib(ram['precopy-bytes'])} kbytes\n`;
    if (nonZero(ram['downtime-bytes'])) s += `downtime ram: ${kib(ram['downtime-bytes'])} kbytes\n`;
    if (nonZero(ram['postcopy-bytes'])) s += `postcopy ram: ${kib(ram['postcopy-bytes'])} kbytes\n`;
    if (nonZero(ram['dirty-sync-missed-zero-copy']))
      s += `Zero-copy-send fallbacks happened: ${dec(ram['dirty-sync-missed-zero-copy'])} times\n`;
  }
  const x = info['xbzrle-cache'];
  if (x) {
    s += `cache size: ${dec(x['cache-size'])} bytes\n`;
    s += `xbzrle transferred: ${kib(x.bytes)} kbytes\n`;
    s += `xbzrle pages: ${dec(x.pages)} pages\n`;
    s += `xbzrle cache miss: ${dec(x['cache-miss'])} pages\n`;
    s += `xbzrle cache miss rate: ${fixed2(x['cache-miss-rate'])}\n`;
    s += `xbzrle encoding rate: ${fixed2(x['encoding-rate'])}\n`;
    s += `xbzrle overflow: ${dec(x.overflow)}\n`;
  }
  if (info['cpu-throttle-percentage'] !== undefined)
    s += `cpu throttle percentage: ${dec(info['cpu-throttle-percentage'])}\n`;
  if (info['dirty-limit-throttle-time-per-round'] !== undefined)
    s += `dirty-limit throttle time: ${dec(info['dirty-limit-throttle-time-per-round'])} us\n`;
  if (info['dirty-limit-ring-full-time'] !== undefined)
    s += `dirty-limit ring full time: ${dec(info['dirty-limit-ring-full-time'])} us\n`;
  if (info['postcopy-blocktime'] !== undefined)
    s += `postcopy blocktime: ${u64(info['postcopy-blocktime']) & 0xffffffffn}\n`;
  if (info['postcopy-vcpu-blocktime'] !== undefined)
    s += `postcopy vcpu blocktime: ${uintListString(info['postcopy-vcpu-blocktime'])}\n`;
  if (info['socket-address'] !== undefined) {
    s += 'socket address: [\n';
    for (const a of info['socket-address']) s += `\t${socketAddressToString(a)}\n`;
    s += ']\n';
  }
  if (info.vfio) s += `vfio device transferred: ${kib(info.vfio.transferred)} kbytes\n`;
  return s;
}

/** hmp_info_migrate_capabilities(). */
export function formatCapabilities(caps: readonly MigrationCapabilityStatus[]): string {
  return caps.map((c) => `${c.capability}: ${c.state ? 'on' : 'off'}\n`).join('');
}

const onOff = (v: boolean | undefined) => (v ? 'on' : 'off');

/** hmp_info_migrate_parameters(); absent members print as C's zero values. */
export function formatParameters(p: MigrationParameters): string {
  const n = (v: unknown) => dec(v ?? 0);
  let s = '';
  s += `announce-initial: ${n(p['announce-initial'])} ms\n`;
  s += `announce-max: ${n(p['announce-max'])} ms\n`;
  s += `announce-rounds: ${n(p['announce-rounds'])}\n`;
  s += `announce-step: ${n(p['announce-step'])} ms\n`;
  s += `throttle-trigger-threshold: ${n(p['throttle-trigger-threshold'])}\n`;
  s += `cpu-throttle-initial: ${n(p['cpu-throttle-initial'])}\n`;
  s += `cpu-throttle-increment: ${n(p['cpu-throttle-increment'])}\n`;
  s += `cpu-throttle-tailslow: ${onOff(p['cpu-throttle-tailslow'])}\n`;
  s += `max-cpu-throttle: ${n(p['max-cpu-throttle'])}\n`;
  s += `tls-creds: '${p['tls-creds'] ?? ''}'\n`;
  s += `tls-hostname: '${p['tls-hostname'] ?? ''}'\n`;
  s += `max-bandwidth: ${n(p['max-bandwidth'])} bytes/second\n`;
  s += `avail-switchover-bandwidth: ${n(p['avail-switchover-bandwidth'])} bytes/second\n`;
  s += `downtime-limit: ${n(p['downtime-limit'])} ms\n`;
  s += `x-checkpoint-delay: ${n(p['x-checkpoint-delay'])} ms\n`;
  s += `multifd-channels: ${n(p['multifd-channels'])}\n`;
  s += `multifd-compression: ${p['multifd-compression'] ?? 'none'}\n`;
  s += `zero-page-detection: ${p['zero-page-detection'] ?? 'none'}\n`;
  s += `xbzrle-cache-size: ${n(p['xbzrle-cache-size'])} bytes\n`;
  s += `max-postcopy-bandwidth: ${n(p['max-postcopy-bandwidth'])}\n`;
  s += `tls-authz: '${p['tls-authz'] ?? ''}'\n`;
  const bbm = p['block-bitmap-mapping'];
  if (bbm !== undefined) {
    s += 'block-bitmap-mapping:\n';
    for (const node of bbm) {
      s += `  '${node['node-name']}' -> '${node.alias}'\n`;
      for (const b of node.bitmaps) s += `    '${b.name}' -> '${b.alias}'\n`;
    }
  }
  s += `x-vcpu-dirty-limit-period: ${n(p['x-vcpu-dirty-limit-period'])} ms\n`;
  s += `vcpu-dirty-limit: ${n(p['vcpu-dirty-limit'])} MB/s\n`;
  s += `mode: ${p.mode ?? 'normal'}\n`;
  if (p['direct-io'] !== undefined) s += `direct-io: ${onOff(p['direct-io'])}\n`;
  return s;
}

/** hmp_info_status(): "paused" plus the run state unless that is plain `paused`. */
export function formatStatus(st: StatusInfo): string {
  if (st.running) return 'VM status: running\n';
  return st.status === 'paused' ? 'VM status: paused\n' : `VM status: paused (${st.status})\n`;
}

/** hmp_info_version(): the package string follows the version with no separator. */
export function formatVersion(v: VersionInfo): string {
  return `${numeric(v.qemu.major)}.${numeric(v.qemu.minor)}.${numeric(v.qemu.micro)}${v.package}\n`;
}

/**
 * hmp_info_memdev(): one block per backend (`size:` is followed by two spaces), `reserve`
 * only when the backend reports it, host nodes as the string output visitor writes a list;
 * then an empty line, which is all that is printed when there is no backend.
 */
export function formatMemdevs(memdevs: readonly Memdev[]): string {
  let s = '';
  for (const m of memdevs) {
    s += `memory backend: ${m.id ?? ''}\n`;
    s += `  size:  ${dec(m.size)}\n  merge: ${m.merge}\n  dump: ${m.dump}\n`;
    s += `  prealloc: ${m.prealloc}\n  share: ${m.share}\n`;
    if (m.reserve !== undefined) s += `  reserve: ${m.reserve}\n`;
    s += `  policy: ${m.policy}\n  host nodes: ${uintListString(m['host-nodes'])}\n`;
  }
  return `${s}\n`;
}
