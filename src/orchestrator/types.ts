/**
 * The shapes of a migration driven between two QMP endpoints (`qmigrate migrate` and the
 * library call under it): what to do (MigratePlan), what it looks like while it runs
 * (ProgressSample), and how it ended (MigrationReport). Field names follow QEMU's
 * query-migrate (qapi/migration.json MigrationInfo, MigrationStats) where they mean the same.
 */
import type { MigrationChannel, MigrationInfo, MigrationStatus } from '../qapi/types.js';
import type { QmpTlsOptions } from '../qmp/tls.js';

/**
 * Where a monitor is: a unix socket path, `HOST:PORT`, `unix:PATH` or `tcp:HOST:PORT`
 * (parsed by parseQmpEndpoint); `tls` when the monitor has `tls-creds` (a tcp one).
 */
export type QmpEndpoint =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number; tls?: QmpTlsOptions };

/**
 * The migration stream over TLS: qmigrate creates a tls-creds-x509 object on each side (the
 * source a client endpoint, the destination a server one with verify-peer=on), points
 * `tls-creds` at it, and removes both when the migration ends, however it ends.
 */
export interface MigrationTls {
  /**
   * The credentials directory as each host's QEMU reads it (`dir=`; qmigrate never reads
   * it): the source's holds ca-cert.pem, client-cert.pem and client-key.pem, the
   * destination's ca-cert.pem, server-cert.pem and server-key.pem. One directory with all
   * five serves both, as libvirt lays out /etc/pki/qemu.
   */
  sourceDir: string;
  destinationDir: string;
  /** The source's `tls-hostname`: the name the destination's certificate carries (default: the address's host). */
  hostname?: string;
  /** The objects' id on both sides (default `qmigrate-tls0`; the CLI picks a fresh one per run). */
  id?: string;
}

/**
 * What to do when `timeoutS` passes before the migration completed: cancel it, pause the
 * source's guest so it converges, or switch to postcopy (`postcopy-ram` must be on).
 */
export type TimeoutPolicy = 'cancel' | 'pause' | 'postcopy';

/**
 * When a migration with `postcopy-ram` switches to postcopy (`migrate-start-postcopy`) by
 * itself. Besides these, the timeout policy `postcopy` and MigrationJob.startPostcopy() switch.
 */
export interface PostcopyPlan {
  /**
   * Switch once this many precopy passes have ended without the migration completing (QEMU's
   * dirty-sync-count is then above it): 1 is virsh's `--postcopy-after-precopy`, after the
   * first pass; 0 switches as soon as the migration is active. Undefined: not by passes.
   */
  afterPasses?: number;
}

/** One migration between two monitors, everything the user asked for. */
export interface MigratePlan {
  from: QmpEndpoint;
  to: QmpEndpoint;
  /**
   * Where the stream goes, as the destination listens: `channels` (QEMU 8.2+ form; a source
   * older than 8.2 gets the equivalent uri) or a legacy `uri`. Exactly one.
   */
  channels?: MigrationChannel[];
  uri?: string;
  /** Set on both ends: capabilities by QEMU name, and parameters by QEMU name with QMP values. */
  capabilities: Record<string, boolean>;
  parameters: Record<string, unknown>;
  /** The stream over TLS, with credentials objects qmigrate makes and removes. */
  tls?: MigrationTls;
  /** Seconds before `onTimeout` applies; undefined: no timeout. */
  timeoutS?: number;
  onTimeout: TimeoutPolicy;
  /** Switch to postcopy by itself (needs `postcopy-ram` in `capabilities`). */
  postcopy?: PostcopyPlan;
  /**
   * Recover a postcopy migration that paused on a broken link instead of starting one: the
   * destination `migrate-recover`s on the plan's address, the source `migrate`s there with
   * `resume: true`. Capabilities, parameters and TLS are the paused migration's own.
   */
  resume?: boolean;
}

/** The command a plan sends to one side, in order (what `--dry-run` prints). */
export interface PlannedCommand {
  side: 'source' | 'destination';
  execute: string;
  arguments?: Record<string, unknown>;
  /** `cleanup`: sent once the migration has ended, whatever the outcome (TLS objects removed). */
  phase?: 'cleanup';
}

/** One observation of a running migration, from the source's query-migrate. */
export interface ProgressSample {
  type: 'progress';
  /** ms since `migrate` was sent. */
  elapsedMs: number;
  status: MigrationStatus;
  /** The pass (QEMU's dirty-sync-count, MIGRATION_PASS). */
  pass: number;
  /** Bytes: RAM transferred and the guest's total RAM; remaining as QEMU reports it. */
  transferred: number;
  total: number;
  remaining: number;
  /** 0..100, from total and remaining; undefined until RAM counters appear. */
  percent?: number;
  /** Bytes per second over the last sample window. */
  throughput: number;
  /** Pages the guest dirties per second (QEMU's dirty-pages-rate). */
  dirtyPagesRate: number;
  /** ms, QEMU's expected-downtime. */
  expectedDowntimeMs?: number;
  /** Seconds to completion at the current throughput and dirty rate; undefined if not converging. */
  etaS?: number;
  /** Pages the destination asked for on its return path, and the bytes sent since postcopy began. */
  postcopyRequests?: number;
  postcopyBytes?: number;
}

/** A MIGRATION event seen on either side. */
export interface MigrationEventSample {
  type: 'event';
  side: 'source' | 'destination';
  elapsedMs: number;
  event: string;
  data: Record<string, unknown>;
}

/** The postcopy part of a report, from both sides' query-migrate. */
export interface PostcopyReport {
  /** What made the switch: passes (PostcopyPlan), the timeout, a request, or a resumed migration. */
  startedBy: 'passes' | 'timeout' | 'request' | 'resume';
  /** ms after `migrate` that `migrate-start-postcopy` was sent (not for a resume). */
  startedAtMs?: number;
  /** The source's ram.postcopy-bytes and ram.postcopy-requests. */
  bytes?: number;
  requests?: number;
  /**
   * ms the destination's guest was blocked on missing pages (its postcopy-blocktime, with
   * the `postcopy-blocktime` capability), and per vCPU.
   */
  blocktimeMs?: number;
  vcpuBlocktimeMs?: number[];
}

/** How the migration ended. */
export interface MigrationReport {
  type: 'report';
  /**
   * `postcopy-paused`: the link broke during postcopy; the guest runs on the destination and
   * waits for the pages it lacks, the source holds them: recover with a `resume` plan.
   * `postcopy-active`: qmigrate stopped following a postcopy migration (an interrupt: postcopy
   * cannot be cancelled), which goes on without it.
   */
  status: 'completed' | 'failed' | 'cancelled' | 'postcopy-paused' | 'postcopy-active';
  /** Why it did not complete: QEMU's error-desc, a timeout, an interrupt. */
  reason?: string;
  /** What ended it when qmigrate did: the timeout policy, or a signal. */
  endedBy?: 'timeout-cancel' | 'timeout-pause' | 'interrupt';
  /**
   * ms since `migrate` when --on-timeout pause stopped the source's guest (endedBy
   * 'timeout-pause'): it did not run from then on, though QEMU's downtime counts from the
   * switchover only.
   */
  pausedAtMs?: number;
  /** Set when the migration switched to postcopy (or was resumed in postcopy). */
  postcopy?: PostcopyReport;
  /** ms, as QEMU reports them (total-time, setup-time, downtime). */
  totalTimeMs?: number;
  setupTimeMs?: number;
  downtimeMs?: number;
  transferred?: number;
  /** Bytes per second, averaged over the whole migration. */
  throughput?: number;
  passes?: number;
  pages?: { normal: number; duplicate: number };
  /** The source's run state at the end (`running` after every failure: the guest stayed). */
  sourceRunState: string;
  /**
   * The destination's run state at the end: `running` after a completed migration (`paused`
   * if the source's guest was paused before it started, as QEMU leaves it), or `unreachable`
   * when its monitor is gone: QEMU 10.0 exits after a failed or cancelled incoming migration
   * (migrate-incoming's exit-on-error defaults to true).
   */
  destinationRunState?: string;
  /**
   * What went wrong besides the status, loudly: a source guest that ran before and does not
   * now, a wait given up on.
   */
  warnings?: string[];
  /** The source's last query-migrate, as QEMU gave it. */
  source?: MigrationInfo;
}
