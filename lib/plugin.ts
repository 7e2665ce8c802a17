import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyBaseLogger } from 'fastify'
import type { FastifySqliteBackupOptions } from '../types/index'
import { resolveOptions } from './options'
import { Backups, type RegistrationBudget } from './backups'
import { FST_SQLITE_BACKUP_ALREADY_REGISTERED, FST_SQLITE_BACKUP_INVALID_OPTION } from './errors'

/**
 * Registration: options checked before any side effect, `fastify.backup` decorated at once, the schedule armed on
 * `onReady`, and everything released on `onClose`.
 */
async function fastifySqliteBackupPlugin (fastify: FastifyInstance, options: FastifySqliteBackupOptions): Promise<void> {
  if (fastify.hasDecorator('backup')) throw new FST_SQLITE_BACKUP_ALREADY_REGISTERED()
  // Validation first: a rejected registration creates, opens and arms nothing.
  const resolved = resolveOptions(options)
  const backups = new Backups(resolved, pluginLogger(fastify, options))
  const budget = registrationBudget(fastify.initialConfig.pluginTimeout)
  await backups.prepare(budget)
  if (resolved.restoreIfMissing) await backups.restoreIfMissing(budget)

  fastify.decorate('backup', {
    now: (nowOptions) => backups.now(nowOptions),
    status: () => backups.status(),
    list: (listOptions) => backups.list(listOptions),
    verify: (id, verifyOptions) => backups.verify(id, verifyOptions),
    restore: (backup, restoreOptions) => backups.restore(backup, restoreOptions),
    sync: () => backups.sync(),
    window: (windowOptions) => backups.window(windowOptions)
  })
  fastify.addHook('onReady', async () => { await backups.start(registrationBudget(fastify.initialConfig.pluginTimeout)) })
  fastify.addHook('onClose', async () => { await backups.close() })
}

// What registration leaves of Fastify's pluginTimeout to Fastify and other plugins: 3 s, or half of a short one.
const BUDGET_MARGIN_MS = 3000

/** Registration must end within Fastify's pluginTimeout, or the app fails to boot with our work still running. */
function registrationBudget (pluginTimeout = 10_000): RegistrationBudget {
  if (pluginTimeout <= 0) return { signal: new AbortController().signal, pluginTimeout }
  const budget = Math.max(pluginTimeout - BUDGET_MARGIN_MS, Math.floor(pluginTimeout / 2))
  return { signal: AbortSignal.timeout(budget), pluginTimeout }
}

/**
 * The plugin's logger. It shares its parent's context (fastify-plugin), so Fastify applies no `logLevel` given at
 * registration to it: the plugin does, as a user of `register(plugin, { logLevel })` expects.
 */
function pluginLogger (fastify: FastifyInstance, options: FastifySqliteBackupOptions): FastifyBaseLogger {
  const level = (options as { logLevel?: unknown }).logLevel
  if (level === undefined) return fastify.log
  try {
    return fastify.log.child({}, { level: level as string })
  } catch {
    throw new FST_SQLITE_BACKUP_INVALID_OPTION('logLevel', 'a log level of the app\'s logger, such as \'warn\'')
  }
}

export const fastifySqliteBackup = fp(fastifySqliteBackupPlugin, {
  fastify: '5.x',
  name: 'fastify-sqlite-backup'
})
