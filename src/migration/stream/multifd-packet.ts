/**
 * The records of a multifd channel in QEMU 10.0's layout (migration/multifd.h): the 64-byte
 * MultiFDInit_t a channel opens with, and the MultiFDPacket_t header in front of each
 * packet's page data; big-endian, as named fields. Checking them (QEMU's order and texts) is
 * multifd.ts's job: decoding never throws.
 */
import { readBe64, writeBe64 } from '../../util/be64.js';

export const MULTIFD_MAGIC = 0x11223344;
export const MULTIFD_VERSION = 1;
export const MULTIFD_FLAG_SYNC = 1;
export const MULTIFD_FLAG_COMPRESSION_MASK = 0x1f << 1;
/** A packet of device state rather than pages. */
export const MULTIFD_FLAG_DEVICE_STATE = 32 << 1;
/** Page offsets a packet has room for: MULTIFD_PACKET_SIZE (512 KiB) in 4 KiB pages. */
export const MULTIFD_PAGES = 128;
/** Bytes of MultiFDInit_t. */
export const MULTIFD_INIT_SIZE = 64;
/** Bytes of a packet header with room for MULTIFD_PAGES offsets. */
export const MULTIFD_HEADER = 320 + 8 * MULTIFD_PAGES;

/** Where MultiFDInit_t's fields are (unused1[7] and unused2[4] fill 25..63, zero). */
const INIT = { magic: 0, version: 4, uuid: 8, id: 24 } as const;
const UUID_SIZE = 16;

/**
 * Where MultiFDPacket_t's fields are: MultiFDPacketHdr_t (magic, version, flags), then the
 * RAM packet's; unused32[1] and unused64[3] fill 36..63, zero.
 */
const PACKET = {
  magic: 0,
  version: 4,
  flags: 8,
  pagesAlloc: 12,
  normalPages: 16,
  nextPacketSize: 20,
  packetNum: 24,
  zeroPages: 32,
  ramblock: 64,
  offset: 320,
} as const;
/** QEMU ends the name at byte 255 whatever the sender put there. */
const RAMBLOCK_NAME_MAX = 255;

/** MultiFDInit_t. */
export interface MultifdInit {
  magic: number;
  version: number;
  /** The source's -uuid, 16 bytes (zeros without one); decoded, a view of the packet. */
  uuid: Buffer;
  /** The channel's number, 0-based. */
  id: number;
}

/** MultiFDPacket_t's header, the offsets included. */
export interface MultifdHeader {
  magic: number;
  version: number;
  flags: number;
  /** Offsets the sender's packet had room for (MULTIFD_PAGES), 0 on a SYNC packet. */
  pagesAlloc: number;
  normalPages: number;
  /** Bytes of page data after the header: normalPages pages. */
  nextPacketSize: number;
  packetNum: number;
  zeroPages: number;
  /** The RAM block's idstr (empty on a packet without pages). */
  ramblock: string;
  /** Byte offsets in the block: the normal pages', then the zero pages'. */
  offsets: number[];
}

/** A 64-byte init packet; magic and version default to QEMU 10.0's, the uuid to zeros. */
export function encodeMultifdInit(init: Partial<MultifdInit> & { id: number }): Buffer {
  const b = Buffer.alloc(MULTIFD_INIT_SIZE);
  b.writeUInt32BE(init.magic ?? MULTIFD_MAGIC, INIT.magic);
  b.writeUInt32BE(init.version ?? MULTIFD_VERSION, INIT.version);
  init.uuid?.copy(b, INIT.uuid, 0, UUID_SIZE);
  b.writeUInt8(init.id, INIT.id);
  return b;
}

/** The fields of a 64-byte init packet (`b` has at least MULTIFD_INIT_SIZE bytes). */
export function decodeMultifdInit(b: Buffer): MultifdInit {
  return {
    magic: b.readUInt32BE(INIT.magic),
    version: b.readUInt32BE(INIT.version),
    uuid: b.subarray(INIT.uuid, INIT.uuid + UUID_SIZE),
    id: b.readUInt8(INIT.id),
  };
}

/**
 * A MULTIFD_HEADER-byte packet header. Fields left out are 0 (magic and version QEMU
 * 10.0's), so a SYNC packet is `{ flags: MULTIFD_FLAG_SYNC, packetNum }`.
 * @throws {InternalError} for a packet number or offset beyond 2^53 (see writeBe64).
 */
export function encodeMultifdHeader(h: Partial<MultifdHeader>): Buffer {
  const b = Buffer.alloc(MULTIFD_HEADER);
  b.writeUInt32BE(h.magic ?? MULTIFD_MAGIC, PACKET.magic);
  b.writeUInt32BE(h.version ?? MULTIFD_VERSION, PACKET.version);
  b.writeUInt32BE(h.flags ?? 0, PACKET.flags);
  b.writeUInt32BE(h.pagesAlloc ?? 0, PACKET.pagesAlloc);
  b.writeUInt32BE(h.normalPages ?? 0, PACKET.normalPages);
  b.writeUInt32BE(h.nextPacketSize ?? 0, PACKET.nextPacketSize);
  writeBe64(b, PACKET.packetNum, h.packetNum ?? 0);
  b.writeUInt32BE(h.zeroPages ?? 0, PACKET.zeroPages);
  if (h.ramblock) b.write(h.ramblock, PACKET.ramblock, RAMBLOCK_NAME_MAX, 'latin1');
  const offsets = h.offsets ?? [];
  for (let k = 0; k < offsets.length; k++) writeBe64(b, PACKET.offset + 8 * k, offsets[k]!);
  return b;
}

/**
 * The fields of a packet header (`b` has MULTIFD_HEADER bytes). Offsets are read as far as
 * normalPages + zeroPages says, at most the MULTIFD_PAGES the header has room for; one of
 * 2^53 or more reads as at least that (see readBe64).
 */
export function decodeMultifdHeader(b: Buffer): MultifdHeader {
  const normalPages = b.readUInt32BE(PACKET.normalPages);
  const zeroPages = b.readUInt32BE(PACKET.zeroPages);
  const name = b.subarray(PACKET.ramblock, PACKET.ramblock + RAMBLOCK_NAME_MAX);
  const end = name.indexOf(0);
  const count = Math.min(normalPages + zeroPages, MULTIFD_PAGES);
  const offsets = new Array<number>(count);
  for (let k = 0; k < count; k++) offsets[k] = readBe64(b, PACKET.offset + 8 * k);
  return {
    magic: b.readUInt32BE(PACKET.magic),
    version: b.readUInt32BE(PACKET.version),
    flags: b.readUInt32BE(PACKET.flags),
    pagesAlloc: b.readUInt32BE(PACKET.pagesAlloc),
    normalPages,
    nextPacketSize: b.readUInt32BE(PACKET.nextPacketSize),
    packetNum: readBe64(b, PACKET.packetNum),
    zeroPages,
    ramblock: name.subarray(0, end < 0 ? RAMBLOCK_NAME_MAX : end).toString('latin1'),
    offsets,
  };
}
