import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { FastifySqliteBackupOptions } from '../types/index'
import { resolveOptions } from './options'
import { BackupManager } from './backup-manager'
import { FST_SQLITE_BACKUP_ALREADY_REGISTERED, FST_SQLITE_BACKUP_INVALID_DESTINATION } from './errors'

async function fastifySqliteBackupPlugin (fastify: FastifyInstance, options: FastifySqliteBackupOptions): Promise<void> {
  if (fastify.hasDecorator('backup')) throw new FST_SQLITE_BACKUP_ALREADY_REGISTERED()
  // Validation first: a rejected registration creates, opens and arms nothing.
  const resolved = resolveOptions(options)
  const manager = new BackupManager(resolved, fastify.log)
  try {
    await manager.prepare()
  } catch (err) {
    throw new FST_SQLITE_BACKUP_INVALID_DESTINATION(resolved.destination, (err as Error).message, { cause: err })
  }
  if (resolved.restoreIfMissing) await manager.restoreIfMissing()

  fastify.decorate('backup', {
    now: (nowOptions) => manager.now(nowOptions),
    status: () => manager.status(),
    list: () => manager.list(),
    verify: (id) => manager.verify(id),
    restore: (backup, restoreOptions) => manager.restore(backup, restoreOptions)
  })
  fastify.addHook('onReady', async () => { await manager.start() })
  fastify.addHook('onClose', async () => { await manager.close() })
}

export const fastifySqliteBackup = fp(fastifySqliteBackupPlugin, {
  fastify: '5.x',
  name: 'fastify-sqlite-backup'
})
