/**
 * The source's reading of the return path (migration/migration.c source_return_path_thread):
 * the destination's messages, a be16 type and a be16 length before the payload, checked in
 * QEMU 10.0's order and with its texts. A precopy takes PONG, SHUT and SWITCHOVER_ACK; the
 * postcopy messages end the migration (qmigrate has no postcopy).
 */
import { QapiError } from '../../qapi/errors.js';
import { TimeSlice } from '../time-slice.js';
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

/**
 * Reads messages until SHUT; PONGs and SWITCHOVER_ACK are taken (the ping only opens the
 * path; this source does not wait for a switchover ack).
 * @returns SHUT's value: 0 when the destination loaded the stream, else its error flag.
 * @throws {QapiError} with QEMU 10.0's text for an invalid type or a wrong length (both
 * checked before the payload is waited for, the length against RP_MESSAGE_MAX too) or a
 * payload cut short; and a clear one for the postcopy messages.
 * @throws {StreamError} when the path ends between messages (or the reader's source failed).
 */
export async function readReturnPath(r: QemuFileReader): Promise<number> {
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
    throw postcopyMessage(type, data);
  }
}

/** The error for a postcopy message, after QEMU's own checks of its payload. */
function postcopyMessage(type: number, data: Buffer): QapiError {
  const unsupported = (what: string) =>
    new QapiError(`Received '${RP_CMD_ARGS[type]!.name}' message: ${what}, which qmigrate does not support`);
  if (type === MIG_RP_MSG_REQ_PAGES_ID) {
    const expected = data.length >= 13 ? 13 + data[12]! : 13;
    if (data.length !== expected)
      return new QapiError(`Req_Page_id with length ${data.length} expecting ${expected}`);
  }
  if (type === MIG_RP_MSG_RECV_BITMAP && data.length < 1)
    return new QapiError('MIG_RP_MSG_RECV_BITMAP missing block name');
  if (type === MIG_RP_MSG_RESUME_ACK && data.readUInt32BE(0) !== 1)
    return new QapiError(`illegal resume_ack value ${data.readUInt32BE(0)}`);
  if (type === MIG_RP_MSG_RECV_BITMAP || type === MIG_RP_MSG_RESUME_ACK)
    return unsupported('a postcopy recovery step');
  return unsupported('a page request of postcopy');
}
