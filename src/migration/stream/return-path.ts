/**
 * The source's reading of the return path (migration/migration.c source_return_path_thread):
 * the destination's messages, a be16 type and a be16 length before the payload, checked in
 * QEMU 10.0's order and with its texts. A precopy takes PONG, SHUT and SWITCHOVER_ACK; a
 * postcopy source also takes page requests, received bitmaps and RESUME_ACK.
 */
import { QapiError } from '../../qapi/errors.js';
import { TimeSlice } from '../time-slice.js';
import { MIGRATION_RESUME_ACK_VALUE } from './postcopy.js';
import type { QemuFileReader } from './qemu-file.js';
import { StreamError } from './qemu-file.js';
import {
  MIG_RP_MSG_PONG,
  MIG_RP_MSG_RECV_BITMAP,
  MIG_RP_MSG_REQ_PAGES,
  MIG_RP_MSG_REQ_PAGES_ID,
  MIG_RP_MSG_RESUME_ACK,
  MIG_RP_MSG_SHUT,
} from './savevm.js';

/** QEMU reads a return-path payload into a buffer of this size and refuses longer ones. */
export const RP_MESSAGE_MAX = 512;

/** migration.h enum mig_rp_message_type, past SHUT and PONG (savevm.ts). */
export const MIG_RP_MSG_SWITCHOVER_ACK = 7;
const MIG_RP_MSG_MAX = 8;

/** migration.c rp_cmd_args: each message's name and payload length (-1: variable). */
const RP_CMD_ARGS: readonly { name: string; len: number }[] = [
  { name: 'INVALID', len: -1 },
  { name: 'SHUT', len: 4 },
  { name: 'PONG', len: 4 },
  { name: 'REQ_PAGES_ID', len: -1 },
  { name: 'REQ_PAGES', len: 12 },
  { name: 'RECV_BITMAP', len: -1 },
  { name: 'RESUME_ACK', len: 4 },
  { name: 'SWITCHOVER_ACK', len: 0 },
];

const hex4 = (v: number) => `0x${v.toString(16).padStart(4, '0')}`;

/** What a postcopy source does with the destination's postcopy messages. */
export interface PostcopyHandlers {
  /**
   * A page request, already checked for whole host pages (ram_save_queue_pages: counts it,
   * finds the block, queues the pages).
   * @param idstr the block named, or undefined for the block of the last request.
   * @param start byte offset in the block; @param len bytes.
   * @throws {QapiError} with QEMU's text for an unknown block or a range past its end.
   */
  reqPages(idstr: string | undefined, start: number, len: number): void;
  /**
   * RECV_BITMAP's header came (migrate_handle_rp_recv_bitmap): the block's received bitmap
   * follows on the path, for the handler to read.
   * @throws {QapiError}
   */
  recvBitmap(idstr: string, r: QemuFileReader): Promise<void>;
  /** RESUME_ACK with its valid value (migrate_handle_rp_resume_ack). */
  resumeAck(): void;
}

/** The host page size a request must be a whole number of (qemu_real_host_page_size). */
const HOST_PAGE_SIZE = 4096;

/**
 * Reads messages until SHUT; PONGs and SWITCHOVER_ACK are taken (the ping only opens the
 * path; this source does not wait for a switchover ack). With `postcopy` (postcopy-ram on),
 * page requests, received bitmaps and RESUME_ACK go to it; without, they end the migration.
 * @returns SHUT's value: 0 when the destination loaded the stream, else its error flag.
 * @throws {QapiError} with QEMU 10.0's text for an invalid type or a wrong length (both
 * checked before the payload is waited for, the length against RP_MESSAGE_MAX too) or a
 * payload cut short; for a bad page request; and a clear one for postcopy messages
 * without postcopy.
 * @throws {StreamError} when the path ends between messages (or the reader's source failed).
 */
export async function readReturnPath(r: QemuFileReader, postcopy?: PostcopyHandlers): Promise<number> {
  // A destination that floods PONGs must not hold the monitors off: QEMU reads the return
  // path in a thread of its own.
  const slice = new TimeSlice();
  for (;;) {
    await slice.maybeYield();
    await r.need(4, 'a return-path message');
    const type = r.be16();
    const len = r.be16();
    if (type === 0 || type >= MIG_RP_MSG_MAX)
      throw new QapiError(`Received invalid message ${hex4(type)} length ${hex4(len)}`);
    const args = RP_CMD_ARGS[type]!;
    if ((args.len !== -1 && len !== args.len) || len > RP_MESSAGE_MAX) {
      // QEMU's text runs "with" into "incorrect" and prints -1 as a size_t.
      const expecting = args.len === -1 ? '18446744073709551615' : String(args.len);
      throw new QapiError(
        `Received '${args.name}' message (${hex4(type)}) withincorrect length ${len} expecting ${expecting}`,
      );
    }
    try {
      await r.need(len, 'a return-path message');
    } catch (e) {
      if (!(e instanceof StreamError)) throw e;
      throw new QapiError(
        `Failed reading data for message ${hex4(type)} read ${r.available} expected ${len}`,
      );
    }
    const data = r.bytes(len);
    if (type === MIG_RP_MSG_SHUT) return data.readUInt32BE(0);
    if (type === MIG_RP_MSG_PONG || type === MIG_RP_MSG_SWITCHOVER_ACK) continue;
    const err = checkPostcopyMessage(type, data);
    if (err) throw err;
    if (!postcopy) throw unsupported(type);
    await handlePostcopyMessage(type, data, r, postcopy);
  }
}

/** Hands a checked postcopy message to the source (source_return_path_thread's cases). */
async function handlePostcopyMessage(
  type: number,
  data: Buffer,
  r: QemuFileReader,
  h: PostcopyHandlers,
): Promise<void> {
  if (type === MIG_RP_MSG_REQ_PAGES || type === MIG_RP_MSG_REQ_PAGES_ID) {
    const start = Number(data.readBigUInt64BE(0));
    const len = data.readUInt32BE(8);
    const idstr =
      type === MIG_RP_MSG_REQ_PAGES_ID ? data.subarray(13, 13 + data[12]!).toString('latin1') : undefined;
    if (start % HOST_PAGE_SIZE || len % HOST_PAGE_SIZE) {
      throw new QapiError(
        `MIG_RP_MSG_REQ_PAGES: Misaligned page request, start:${start.toString(16)} len: ${len}`,
      );
    }
    h.reqPages(idstr, start, len);
  } else if (type === MIG_RP_MSG_RECV_BITMAP) {
    // The name is the counted string, cut where QEMU puts its NUL.
    await h.recvBitmap(data.subarray(1, 1 + data[0]!).toString('latin1'), r);
  } else if (type === MIG_RP_MSG_RESUME_ACK) {
    h.resumeAck();
  }
}

/** QEMU's own checks of a postcopy message's payload, before anything is done with it. */
function checkPostcopyMessage(type: number, data: Buffer): QapiError | undefined {
  if (type === MIG_RP_MSG_REQ_PAGES_ID) {
    const expected = data.length >= 13 ? 13 + data[12]! : 13;
    if (data.length !== expected)
      return new QapiError(`Req_Page_id with length ${data.length} expecting ${expected}`);
  }
  if (type === MIG_RP_MSG_RECV_BITMAP && data.length < 1)
    return new QapiError('MIG_RP_MSG_RECV_BITMAP missing block name');
  if (type === MIG_RP_MSG_RESUME_ACK && data.readUInt32BE(0) !== MIGRATION_RESUME_ACK_VALUE)
    return new QapiError(`illegal resume_ack value ${data.readUInt32BE(0)}`);
  return undefined;
}

/** A postcopy message to a source that is not doing postcopy. */
function unsupported(type: number): QapiError {
  const what =
    type === MIG_RP_MSG_RECV_BITMAP || type === MIG_RP_MSG_RESUME_ACK
      ? 'a postcopy recovery step'
      : 'a page request of postcopy';
  return new QapiError(
    `Received '${RP_CMD_ARGS[type]!.name}' message: ${what}, which needs capability postcopy-ram on this source`,
  );
}
