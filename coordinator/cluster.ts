/** A live handle on the cluster: its config, one client per agent, the repository. */
import { LockstepError, toErrorInfo, type ErrorInfo } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { Repository } from '../lib/repo/repository.js';
import { readTlsMaterial } from '../lib/tls/files.js';
import { describeCertificate } from '../lib/tls/identity.js';
import type { NodeDescription } from '../lib/wire.js';
import { openRepositoryAt } from '../plugins/storage/registry.js';
import { AgentClient } from './client.js';
import type { ClusterConfig } from './config.js';

export interface Described {
  node: string;
  address: string;
  description?: NodeDescription;
  error?: ErrorInfo;
}

export class Cluster {
  private constructor(
    readonly config: ClusterConfig,
    readonly clients: Map<string, AgentClient>,
    readonly log: Logger,
  ) {}

  static async connect(config: ClusterConfig, log: Logger): Promise<Cluster> {
    const tls = await readTlsMaterial(config.tls, config.file);
    const own = describeCertificate(tls.cert);
    if (own.role !== 'coordinator') {
      throw new LockstepError('LOCKSTEP_E_CERT_INVALID', `${config.file}: tls.cert ${config.tls.cert} has role ${own.role ?? 'none'}; the coordinator needs a certificate with role coordinator`, {
        hint: 'issue one with "lockstep ca issue coordinator --name <name>"',
      });
    }
    if (own.expired) {
      throw new LockstepError('LOCKSTEP_E_CERT_INVALID', `${config.file}: tls.cert ${config.tls.cert} expired at ${own.notAfter}`, {
        hint: 'issue a new one with "lockstep ca issue coordinator --name <name> --force"',
      });
    }
    const clients = new Map(config.agents.map((a) => [a.node, new AgentClient(a, tls, config.timeouts)]));
    return new Cluster(config, clients, log);
  }

  client(node: string): AgentClient {
    const c = this.clients.get(node);
    if (!c) throw new LockstepError('LOCKSTEP_E_INTERNAL', `no agent ${node} in ${this.config.file}`);
    return c;
  }

  async openRepository(): Promise<Repository> {
    return openRepositoryAt(this.config.repository, this.config.repositoryBaseDir);
  }

  /** Describe every agent in parallel; an agent that fails is reported, not thrown. `sizes`: see `AgentClient.describe`. */
  async describeAll(signal?: AbortSignal, sizes = true): Promise<Described[]> {
    return Promise.all(
      this.config.agents.map(async (a): Promise<Described> => {
        try {
          return { node: a.node, address: a.address, description: await this.client(a.node).describe(signal, sizes) };
        } catch (err) {
          return { node: a.node, address: a.address, error: toErrorInfo(err, 'LOCKSTEP_E_AGENT_UNREACHABLE', a.node) };
        }
      }),
    );
  }

  async close(): Promise<void> {
    await Promise.all([...this.clients.values()].map((c) => c.close()));
  }
}
