// The plugin as an app uses it: registered on a real Fastify instance, a forced backup taken with now().
// A first backup is taken before the measured one, so that the measured one is what every backup but a process's
// first costs (the first one's time is reported apart). options.rotate: keep 1, so that retention deletes it
// within the measured backup; otherwise keep 2, and nothing is deleted.
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

export async function prepare ({ fastify }) {
  const started = process.hrtime.bigint()
  await fastify.backup.now({ force: true })
  return { firstBackupMs: Number(process.hrtime.bigint() - started) / 1e6 }
}

export async function backup ({ fastify }) {
  const result = await fastify.backup.now({ force: true })
  return { path: result.path, sha256: result.sha256 }
}
