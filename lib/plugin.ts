import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { FastifySqliteBackupOptions } from '../types/index'
import { resolveOptions } from './options'
import { BackupManager } from './backup-manager'
import { FST_SQLITE_BACKUP_ALREADY_REGISTERED } from './errors'

async function fastifySqliteBackupPlugin (fastify: FastifyInstance, options: FastifySqliteBackupOptions): Promise<void> {
  if (fastify.hasDecorator('backup')) throw new FST_SQLITE_BACKUP_ALREADY_REGISTERED()
  // Validation first: a rejected registration creates, opens and arms nothing.
  const resolved = resolveOptions(options)
  const manager = new BackupManager(resolved, fastify.log)
  await manager.prepare()
  if (resolved.restoreIfMissing) await manager.restoreIfMissing()

  fastify.decorate('backup', {
    now: (nowOptions) => manager.now(nowOptions),
    status: () => manager.status(),
    list: (listOptions) => manager.list(listOptions),
    verify: (id, verifyOptions) => manager.verify(id, verifyOptions),
    restore: (backup, restoreOptions) => manager.restore(backup, restoreOptions)
  })
  fastify.addHook('onReady', async () => { await manager.start() })
  fastify.addHook('onClose', async () => { await manager.close() })
}

export const fastifySqliteBackup = fp(fastifySqliteBackupPlugin, {
  fastify: '5.x',
  name: 'fastify-sqlite-backup'
})
