import { setTimeout as sleep } from 'node:timers/promises'
import type Database from 'better-sqlite3'
import { TaskAborted, type ShouldStop } from './worker/protocol'

// Short native waits for a lock keep the worker responsive to a stop; the run's timeout bounds the retries.
export const LOCK_RETRY_MS = 50

/** Begins a read transaction and takes its snapshot (WAL) or shared lock (rollback journal) now. */
export async function beginReadTransaction (db: Database.Database, shouldStop: ShouldStop): Promise<void> {
  await retryWhileBusy(() => {
    db.exec('BEGIN')
    // A deferred transaction takes its read snapshot at the first read.
    db.prepare('SELECT count(*) FROM sqlite_schema').get()
  }, db, shouldStop)
}

/** Runs `step` until it is not refused with SQLITE_BUSY; a transaction it left open is rolled back before a retry. */
export async function retryWhileBusy<T> (step: () => T, db: Database.Database, shouldStop: ShouldStop): Promise<T> {
  for (;;) {
    if (shouldStop()) throw new TaskAborted()
    try {
      return step()
    } catch (err) {
      if (db.inTransaction) db.exec('ROLLBACK')
      if ((err as { code?: string }).code !== 'SQLITE_BUSY') throw err
      await sleep(LOCK_RETRY_MS)
    }
  }
}
