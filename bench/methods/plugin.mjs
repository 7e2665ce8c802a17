// The plugin as an app uses it: registered on a real Fastify instance, a forced backup taken with now().
import { createRequire } from 'node:module'
import { join } from 'node:path'

const require = createRequire(import.meta.url)
const fastifySqliteBackup = require('fastify-sqlite-backup')

export const name = 'plugin'

export async function setup ({ fastify, dbPath, scratchDir }) {
  await fastify.register(fastifySqliteBackup, {
    database: dbPath,
    destination: join(scratchDir, 'backups'),
    interval: false,
    keep: 2
  })
}

export async function backup ({ fastify }) {
  const result = await fastify.backup.now({ force: true })
  return { path: result.path, sha256: result.sha256 }
}
