/**
 * `qmigrate uri URI...`: shows the MigrationChannel QEMU 10.0 builds from each legacy URI
 * (or QEMU's error for it), and the canonical URI of that address.
 */
import { QapiError } from '../../qapi/errors.js';
import { stringifyJson } from '../../qapi/json.js';
import { addressToUri, uriToChannel } from '../../qapi/uri.js';

export function runUri(uris: string[], out: (line: string) => void, err: (line: string) => void): number {
  let failed = 0;
  for (const uri of uris) {
    try {
      const channel = uriToChannel(uri);
      const canonical = addressToUri(channel.addr);
      out(`${uri}\n  channels: [${stringifyJson(channel)}]\n  canonical uri: ${canonical ?? '(none)'}`);
    } catch (e) {
      if (!(e instanceof QapiError)) throw e;
      failed++;
      err(`${uri}\n  error: ${e.desc}`);
    }
  }
  return failed ? 1 : 0;
}
