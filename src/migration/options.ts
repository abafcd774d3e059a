/**
 * Migration capabilities and parameters of one VM (migration/options.c): the current sets,
 * changed only through the QAPI layer's rules so that a refused change leaves them as they
 * were, and the query forms `query-migrate-capabilities` / `query-migrate-parameters` return.
 */
import {
  type Capabilities,
  type CapabilityContext,
  defaultCapabilities,
  defaultParameters,
  MIGRATION_CAPABILITIES,
  mergeCapabilities,
  mergeParameters,
  type Parameters,
} from '../qapi/migration-rules.js';
import type { MigrateSetParameters, MigrationCapabilityStatus, MigrationParameters } from '../qapi/types.js';

export class MigrationOptions {
  #caps: Capabilities = defaultCapabilities();
  #params: Parameters = defaultParameters();

  get caps(): Readonly<Capabilities> {
    return this.#caps;
  }

  get params(): Readonly<Parameters> {
    return this.#params;
  }

  /** @throws {QapiError} with QEMU's text; nothing changes then. */
  setCapabilities(list: readonly MigrationCapabilityStatus[], ctx: Omit<CapabilityContext, 'params'>): void {
    this.#caps = mergeCapabilities(this.#caps, list, { ...ctx, params: this.#params });
  }

  /** @throws {QapiError} with QEMU's text; nothing changes then. */
  setParameters(p: MigrateSetParameters): void {
    this.#params = mergeParameters(this.#params, p, this.#caps);
  }

  queryCapabilities(): MigrationCapabilityStatus[] {
    return MIGRATION_CAPABILITIES.map((capability) => ({ capability, state: this.#caps[capability] }));
  }

  queryParameters(): MigrationParameters {
    return { ...this.#params };
  }
}
