/**
 * Device state decoded field by field from the VM description, the JSON a source appends
 * after EOF (migration/vmstate.c vmstate_save_state's JSON writer, migration/savevm.c). The
 * description lists each saved device's fields with type and size, in stream order, and the
 * subsections that were sent; QEMU's scripts/analyze-migration.py reads device state by it.
 */
import { readBeExact } from '../../util/be64.js';
import type { QemuFileReader } from './qemu-file.js';
import { StreamError } from './qemu-file.js';
import { QEMU_VM_SUBSECTION } from './savevm.js';

/**
 * A decoded field: integers of up to 4 bytes as numbers, of 8 bytes as decimal strings (exact,
 * signed as the type says), `bool` as a boolean, a `capability` as its name, `nullptr` as
 * null, structs and subsections as objects, a name the description gives more than one value
 * (an array's elements) as an array of them, anything else (buffers, bitmaps, timers, floats, unused bytes) as lowercase hex.
 */
export type FieldValue = number | string | boolean | null | FieldValue[] | { [name: string]: FieldValue };

/** One field of a description (the members analyze-migration.py reads). */
interface FieldDesc {
  name: string;
  type: string;
  size: number;
  array_len?: number;
  struct?: StructDesc;
}

/** A vmstate (device, struct or subsection): fields, then the subsections that were sent. */
export interface StructDesc {
  vmsd_name?: string;
  version?: number;
  fields?: FieldDesc[];
  subsections?: StructDesc[];
}

/** A device entry of the description's `devices`. */
export interface DeviceDesc extends StructDesc {
  name: string;
  instance_id: number;
}

/** The parsed VM description. */
export interface VmDescription {
  page_size?: number;
  configuration?: StructDesc;
  devices: DeviceDesc[];
}

/** Integer types by name: [signed, ...]; the `equal`/`le` forms only add a load-time check. */
const INT_TYPES: Record<string, boolean> = {
  int8: true,
  int16: true,
  int32: true,
  'int32 equal': true,
  'int32 le': true,
  int64: true,
  'int64 equal': true,
  uint8: false,
  uint16: false,
  uint32: false,
  'uint32 equal': false,
  uint64: false,
  'uint8 equal': false,
  'uint16 equal': false,
};

/** Bounds that keep a corrupt description from costing more than the stream it describes. */
const MAX_FIELD_BYTES = 64 << 20;
const MAX_DEPTH = 32;
const MAX_ARRAY = 1 << 20;
/**
 * Values decoded per device section: zero-size fields consume no stream bytes, so nested
 * arrays of them (1M x 1M) would otherwise loop and grow the output until the heap runs out.
 */
const MAX_VALUES = 1 << 20;

/**
 * Checks the description's outer shape (a corrupt stream may carry any JSON there).
 * @throws {StreamError} at `offset` (the description's) when it is not a description.
 */
export function checkDescription(json: unknown, offset: number): VmDescription {
  const d = json as VmDescription;
  if (typeof d !== 'object' || d === null || !Array.isArray(d.devices))
    throw new StreamError('the VM description has no "devices" list', offset, 'vmdescription');
  for (const dev of d.devices) {
    if (typeof dev !== 'object' || dev === null || typeof dev.name !== 'string')
      throw new StreamError('a device of the VM description has no name', offset, 'vmdescription');
  }
  return d;
}

/** The description of the device (name, instance), if the VM description lists it. */
export function findDevice(
  d: VmDescription | undefined,
  name: string,
  instance: number,
): DeviceDesc | undefined {
  return d?.devices.find((x) => x.name === name && x.instance_id === instance);
}

/** Decodes one field's bytes by its type. */
function fieldValue(b: Buffer, type: string): FieldValue {
  const signed = INT_TYPES[type];
  if (signed !== undefined && b.length >= 1 && b.length <= 8) {
    const v = readBeExact(b, 0, b.length, signed);
    return b.length <= 4 ? Number(v) : v.toString();
  }
  if (type === 'bool') return b.length > 0 && b[0] !== 0;
  if (type === 'nullptr') return null;
  return b.toString('hex');
}

/** A vmstate's fields and subsections read by its description (recursive for structs). */
export async function readStruct(
  r: QemuFileReader,
  desc: StructDesc,
  section: string,
  depth = 0,
  budget = { values: 0 },
): Promise<{ [name: string]: FieldValue }> {
  if (depth > MAX_DEPTH) throw new StreamError('the VM description nests too deep', r.offset, section);
  const out: { [name: string]: FieldValue } = {};
  const add = (name: string, v: FieldValue) => {
    if (++budget.values > MAX_VALUES)
      throw new StreamError(
        `more than ${MAX_VALUES} values in one section by the VM description`,
        r.offset,
        section,
      );
    if (!(name in out)) out[name] = v;
    else if (Array.isArray(out[name])) (out[name] as FieldValue[]).push(v);
    else out[name] = [out[name]!, v];
  };
  for (const f of desc.fields ?? []) {
    const n = f.array_len ?? 1;
    if (!Number.isInteger(n) || n < 0 || n > MAX_ARRAY)
      throw new StreamError(`field ${f.name}: array_len ${n} in the VM description`, r.offset, section);
    // Each element as its own value, as analyze-migration.py unfolds arrays: a name seen
    // more than once (an array, or the pieces QEMU splits an array with null pointers into)
    // becomes one list.
    for (let i = 0; i < n; i++) add(f.name, await readField(r, f, section, depth, budget));
  }
  for (const sub of desc.subsections ?? []) {
    await r.need(1, `subsection ${sub.vmsd_name}`);
    const at = r.offset;
    if (r.u8() !== QEMU_VM_SUBSECTION)
      throw new StreamError(`subsection ${sub.vmsd_name} expected, found another byte`, at, section);
    const name = await r.cstr('a subsection name');
    await r.need(4, `subsection ${name}`);
    r.skip(4); // its version_id: the description is of what was sent
    add(name, await readStruct(r, sub, section, depth + 1, budget));
  }
  return out;
}

async function readField(
  r: QemuFileReader,
  f: FieldDesc,
  section: string,
  depth: number,
  budget: { values: number },
): Promise<FieldValue> {
  if (f.type === 'struct') {
    if (typeof f.struct !== 'object' || f.struct === null)
      throw new StreamError(`field ${f.name}: a struct with no description`, r.offset, section);
    return readStruct(r, f.struct, section, depth + 1, budget);
  }
  if (f.type === 'capability') return r.cstr(`field ${f.name}`);
  const size = f.size;
  if (!Number.isInteger(size) || size < 0 || size > MAX_FIELD_BYTES)
    throw new StreamError(`field ${f.name}: size ${size} in the VM description`, r.offset, section);
  await r.need(size, `field ${f.name}`);
  return fieldValue(r.bytes(size), f.type);
}
