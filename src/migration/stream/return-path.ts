/**
 * The source's reading of the return path (migration/migration.c source_return_path_thread):
 * the destination's messages, a be16 type and a be16 length before the payload. A precopy
 * without postcopy takes PONG and SHUT; anything else ends the migration.
 */
import { QapiError } from '../../qapi/errors.js';
import type { QemuFileReader } from './qemu-file.js';
import { MIG_RP_MSG_PONG, MIG_RP_MSG_SHUT } from './savevm.js';

/** QEMU reads a return-path payload into a buffer of this size and refuses longer ones. */
export const RP_MESSAGE_MAX = 512;

/**
 * Reads messages until SHUT; PONGs are taken and dropped (the ping only opens the path).
 * @returns SHUT's value: 0 when the destination loaded the stream, else its error flag.
 * @throws {QapiError} `RP: Received invalid message 0xTYPE length 0xLEN` for any other message,
 * a wrong length, or a length over RP_MESSAGE_MAX (checked before the payload is waited for).
 * @throws {StreamError} when the path ends first (or the reader's source failed, its error).
 */
export async function readReturnPath(r: QemuFileReader): Promise<number> {
  for (;;) {
    await r.need(4, 'a return-path message');
    const type = r.be16();
    const len = r.be16();
    const invalid = () =>
      new QapiError(`RP: Received invalid message 0x${type.toString(16)} length 0x${len.toString(16)}`);
    if (len > RP_MESSAGE_MAX) throw invalid();
    await r.need(len, 'a return-path message');
    const data = r.bytes(len);
    if (type === MIG_RP_MSG_SHUT && len === 4) return data.readUInt32BE(0);
    if (type === MIG_RP_MSG_PONG && len === 4) continue;
    throw invalid();
  }
}
