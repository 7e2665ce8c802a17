import { access } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import type { BackupInfo, VerifyResult, RestoreOptions, RestoreResult, ReadOptions, RestorableWindow } from '../types/index'
import type { ResolvedOptions } from './options'
import type { Destination } from './destinations/destination'
import { newestBackup, withLocalCopy, isPointInTime, pointInTime } from './destinations/read'
import type { Publisher } from './publisher'
import type { Staging } from './staging'
import type { BackupsInUse } from './in-use'
import { checksumOf } from './record'
import { verifyInWorker } from './verify'
import { restoreBackup } from './restore'
import { planRestore, restorableWindow } from './continuous/restore-plan'
import { restorePlan } from './continuous/point-in-time'
import { FST_SQLITE_BACKUP_INVALID_OPTION, FST_SQLITE_BACKUP_INVALID_DATABASE } from './errors'

export interface ReaderContext {
  options: ResolvedOptions
  log: FastifyBaseLogger
  publisher: Publisher
  staging: Staging
  inUse: BackupsInUse
  /** Aborts what is read when the app closes. */
  closing: AbortSignal
}

/**
 * Reading backups back: which destination a call reads, a local copy of a backup (downloaded when it is offsite),
 * kept from retention while it is read, and what is done with one: list, verify, restore, and the restore at
 * registration when the database is missing.
 */
export class BackupReader {
  constructor (private readonly context: ReaderContext) {}

  list (options?: ReadOptions): Promise<BackupInfo[]> {
    return this.pick(options).list()
  }

  async window (options?: ReadOptions): Promise<RestorableWindow | null> {
    return await restorableWindow(this.pick(options))
  }

  async verify (id?: string, options?: ReadOptions): Promise<VerifyResult> {
    const { options: { timeout }, closing, log } = this.context
    const destination = this.pick(options)
    const backup = id === undefined ? await newestBackup(destination) : await destination.find(id)
    const checkedAt = new Date()
    const problems = await this.readLocalCopy(destination, backup, (path) => verifyInWorker(
      { path, expected: checksumOf(backup.metadata) },
      { timeout, signal: closing }
    )).catch((err: Error & { code?: string }) => {
      // A backup that cannot be decrypted, or whose download does not match its record, is a finding about that
      // backup, like a bad checksum: reported, not thrown.
      if (err.code === 'FST_SQLITE_BACKUP_DECRYPT_FAILED' || err.code === 'FST_SQLITE_BACKUP_VERIFY_FAILED') return [err.message]
      throw err
    })
    const result: VerifyResult = { ok: problems.length === 0, id: backup.id, path: backup.path, problems, checkedAt, durationMs: Date.now() - checkedAt.getTime() }
    if (result.ok) log.info({ backup: { id: backup.id } }, 'sqlite backup verified')
    else log.error({ backup: { id: backup.id }, problems }, 'sqlite backup failed verification')
    return result
  }

  async restore (target: string | { at: Date | string } | 'latest', options: RestoreOptions): Promise<RestoreResult> {
    const { options: { timeout, databasePath }, closing, log, staging, inUse } = this.context
    if (options === null || typeof options !== 'object' || typeof options.to !== 'string' || options.to === '' || options.to.includes('\0')) {
      throw new FST_SQLITE_BACKUP_INVALID_OPTION('restore(backup, options)', 'options such as { to: \'/path/of/restored.db\', force: false }')
    }
    const destination = this.pick(options)
    const started = Date.now()
    const to = resolve(options.to)
    if (target !== 'latest' && !isPointInTime(target)) {
      const backup = await destination.find(target)
      const { sha256, bytes } = await this.readLocalCopy(destination, backup, (backupPath) => restoreBackup(
        { id: backup.id, backupPath, expected: checksumOf(backup.metadata), to, force: options.force === true, livePath: databasePath },
        { timeout, signal: closing }
      ))
      log.info({ backup: { id: backup.id }, to }, 'sqlite backup restored')
      return { id: backup.id, path: to, bytes, sha256, durationMs: Date.now() - started }
    }
    const plan = await planRestore(destination, target === 'latest' ? undefined : pointInTime(target))
    const restored = await inUse.during(plan.base.id, async () => {
      if (destination.type !== 'local') await staging.ensure()
      return await restorePlan(destination, plan, {
        to,
        force: options.force === true,
        livePath: databasePath,
        downloadPath: (name) => staging.downloadPath(name)
      }, { timeout, signal: closing })
    })
    const replayed = restored.replayed && { ...restored.replayed, at: restored.replayed.at === null ? null : new Date(restored.replayed.at) }
    log.info({ backup: { id: plan.base.id }, replayed, to }, 'sqlite backup restored')
    return { id: plan.base.id, path: to, bytes: restored.bytes, sha256: restored.sha256, durationMs: Date.now() - started, ...(replayed && { replayed }) }
  }

  /** Puts the newest good backup of the first destination where the database should be, if it is missing. */
  async restoreNewestGood (budget: AbortSignal): Promise<void> {
    const { options: { timeout, databasePath: path }, closing, log, publisher } = this.context
    if (await access(path).then(() => true, () => false)) return
    const destination = publisher.destinations[0]
    for (const backup of await destination.list()) {
      if (!backup.good) continue
      try {
        await this.readLocalCopy(destination, backup, (backupPath) => restoreBackup(
          { id: backup.id, backupPath, expected: checksumOf(backup.metadata), to: path, force: false },
          { timeout, signal: AbortSignal.any([closing, budget]) }
        ), budget)
        log.info({ backup: { id: backup.id, path: backup.path }, database: path }, 'sqlite backup: the database was missing; restored it from the newest good backup')
        return
      } catch (err) {
        const code = (err as { code?: string }).code
        if (code !== 'FST_SQLITE_BACKUP_VERIFY_FAILED' && code !== 'FST_SQLITE_BACKUP_DECRYPT_FAILED') throw err
        log.error({ err, backup: { id: backup.id } }, 'sqlite backup: skipping a backup that fails verification; trying an older one')
      }
    }
    throw new FST_SQLITE_BACKUP_INVALID_DATABASE(`the file "${path}" does not exist and "${destination.name}" holds no good backup to restore`)
  }

  /** Runs `work` on a local copy of a backup (downloaded into the staging directory when offsite), kept from retention meanwhile. */
  private async readLocalCopy<T> (destination: Destination, backup: BackupInfo, work: (path: string) => Promise<T>, budget?: AbortSignal): Promise<T> {
    const { options, closing, staging, inUse } = this.context
    return await inUse.during(backup.id, async () => {
      let signal = budget ? AbortSignal.any([closing, budget]) : closing
      if (destination.type !== 'local') {
        await staging.ensure()
        signal = AbortSignal.any([signal, AbortSignal.timeout(options.timeout)])
      }
      return await withLocalCopy(destination, backup, { tempPath: staging.downloadPath(backup.id), signal }, work)
    })
  }

  /** The destination that list(), verify() and restore() read: the first one unless told otherwise. */
  private pick (options: ReadOptions | undefined): Destination {
    const index = options?.destination ?? 0
    const { destinations } = this.context.publisher
    if (options !== undefined && (options === null || typeof options !== 'object')) {
      throw new FST_SQLITE_BACKUP_INVALID_OPTION('options', 'an object such as { destination: 1 }')
    }
    if (!Number.isInteger(index) || index < 0 || index >= destinations.length) {
      throw new FST_SQLITE_BACKUP_INVALID_OPTION('destination', `the index of a destination, from 0 to ${destinations.length - 1}`)
    }
    return destinations[index]
  }
}
