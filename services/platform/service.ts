import type { ConnectRouter } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import { openDatabase, type Database } from "./db.js";
import type { Logger } from "./logger.js";
import { startServer, type RunningServer } from "./server.js";

/** What every service process needs, whichever bounded context it serves. */
export interface ServiceRuntime {
  logger: Logger;
  databaseUrl: string;
  host: string;
  port: number;
  maxRequestBytes: number;
  shutdownGraceMs: number;
}

export interface ServiceDefinition<TSchema extends Record<string, unknown>> {
  /** Postgres schema the service owns. */
  schemaName: string;
  tables: TSchema;
  migrationsFolder: string;
  /** Services reported by grpc.health.v1. */
  services: readonly DescService[];
  /**
   * Builds the service on its migrated database: returns its routes and, for background
   * work such as a saga runner, what to stop after the server drains and before the pool
   * closes.
   */
  setup(database: Database<TSchema>): Promise<{ routes: (router: ConnectRouter) => void; stop?: () => Promise<void> }>;
}

/**
 * The shared skeleton of a service: migrate its schema, set it up, serve. Closing reverses
 * the order: drain RPCs, stop background work, close the pool.
 */
export async function startService<TSchema extends Record<string, unknown>>(
  runtime: ServiceRuntime,
  definition: ServiceDefinition<TSchema>,
): Promise<RunningServer> {
  const { logger } = runtime;
  const database = await openDatabase({
    url: runtime.databaseUrl,
    schemaName: definition.schemaName,
    tables: definition.tables,
    migrationsFolder: definition.migrationsFolder,
    logger,
  });
  let stop: (() => Promise<void>) | undefined;
  try {
    const built = await definition.setup(database);
    stop = built.stop;
    const server = await startServer(
      {
        logger,
        routes: built.routes,
        services: definition.services,
        maxRequestBytes: runtime.maxRequestBytes,
        shutdownGraceMs: runtime.shutdownGraceMs,
      },
      { host: runtime.host, port: runtime.port },
    );
    return {
      ...server,
      async close() {
        await server.close();
        await stop?.();
        await database.close();
      },
    };
  } catch (err) {
    await stop?.();
    await database.close();
    throw err;
  }
}
