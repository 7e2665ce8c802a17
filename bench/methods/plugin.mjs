// The plugin as an app uses it: registered on a real Fastify instance, a forced backup taken with now().
// options.rotate: keep 1, and a first backup taken before the measured one, which retention then deletes.
// options.maxRate: the plugin's maxRate option.
import { createRequire } from 'node:module'
import { join } from 'node:path'

const require = createRequire(import.meta.url)
const fastifySqliteBackup = require('fastify-sqlite-backup')

export const name = 'plugin'

export async function setup ({ fastify, dbPath, scratchDir, options }) {
  await fastify.register(fastifySqliteBackup, {
    database: dbPath,
    destination: join(scratchDir, 'backups'),
    interval: false,
    keep: options.rotate ? 1 : 2,
    ...(options.maxRate ? { maxRate: options.maxRate } : {})
  })
}

export async function prepare ({ fastify, options }) {
  if (options.rotate) await fastify.backup.now({ force: true })
}

export async function backup ({ fastify }) {
  const result = await fastify.backup.now({ force: true })
  return { path: result.path, sha256: result.sha256 }
}
