/**
 * A stand-in for a QEMU 10.0 monitor, built only from the QAPI layer (checker + command
 * rules), so the argument tables can run against qmigrate's code and against real QEMU
 * alike. It holds the little state those rules read: capabilities, parameters, runstate and
 * whether an incoming migration was started. It never migrates anything.
 */

import {
  checkMigrate,
  checkMigrateCancel,
  checkMigrateContinue,
  checkMigrateIncoming,
  checkMigratePause,
  checkMigrateRecover,
  checkStartPostcopy,
} from '../../src/migration/migration.js';
import {
  type Capabilities,
  defaultCapabilities,
  defaultParameters,
  mergeCapabilities,
  mergeParameters,
  type Parameters,
} from '../../src/migration/options.js';
import { checkCommand } from '../../src/qapi/check.js';
import { QapiError } from '../../src/qapi/errors.js';
import type { MigrationCapabilityStatus, MigrationStatus, RunState } from '../../src/qapi/types.js';

export type Reply = { return: unknown } | { error: { class: string; desc: string } };

export class QapiModel {
  caps: Capabilities = defaultCapabilities();
  params: Parameters = defaultParameters();
  status: MigrationStatus = 'none';
  incomingStatus: MigrationStatus = 'none';
  incomingStarted: boolean;
  runstate: RunState;

  /** `incoming`: the -incoming option QEMU was started with, if any. */
  constructor(incoming?: string) {
    this.runstate = incoming === undefined ? 'running' : 'inmigrate';
    this.incomingStarted = incoming !== undefined && incoming !== 'defer';
  }

  execute(command: string, rawArgs?: unknown): Reply {
    try {
      return { return: this.#dispatch(command, checkCommand(command, rawArgs)) };
    } catch (e) {
      if (e instanceof QapiError) return { error: e.toQmp() };
      throw e;
    }
  }

  #dispatch(command: string, a: Record<string, unknown>): unknown {
    const snapshot = { status: this.status, runstate: this.runstate, caps: this.caps, params: this.params };
    switch (command) {
      case 'migrate':
        checkMigrate(a, snapshot);
        this.status = 'setup';
        return {};
      case 'migrate-incoming':
        checkMigrateIncoming(a, {
          incomingStarted: this.incomingStarted,
          runstate: this.runstate,
          incomingStatus: this.incomingStatus,
          caps: this.caps,
          params: this.params,
        });
        this.incomingStarted = true;
        this.incomingStatus = 'setup';
        return {};
      case 'migrate-set-capabilities':
        this.caps = mergeCapabilities(this.caps, a.capabilities as MigrationCapabilityStatus[], {
          ...snapshot,
          incomingStarted: this.incomingStarted,
          host: { backgroundSnapshotKernel: true, backgroundSnapshotMemory: true },
        });
        return {};
      case 'migrate-set-parameters':
        this.params = mergeParameters(this.params, a, this.caps);
        return {};
      case 'query-migrate-parameters':
        return this.params;
      case 'query-migrate-capabilities':
        return Object.entries(this.caps).map(([capability, state]) => ({ capability, state }));
      case 'query-migrate':
        return {};
      case 'migrate-continue':
        checkMigrateContinue(a.state as MigrationStatus, this.status);
        return {};
      case 'migrate_cancel':
        checkMigrateCancel(this.status);
        return {};
      case 'migrate-start-postcopy':
        checkStartPostcopy(this.caps, this.status);
        return {};
      case 'migrate-pause':
        checkMigratePause(this.status, this.incomingStatus);
        return {};
      case 'migrate-recover':
        checkMigrateRecover(this.incomingStatus);
        return {};
      default:
        return {};
    }
  }
}
