import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'

/**
 * A lock shared by every process on this machine that uses the same destination (cluster workers, PM2 instances),
 * kept in a small SQLite file. It is SQLite's own exclusive file lock, held by an open connection: the kernel
 * releases it the instant its holder exits, even by SIGKILL, so a dead holder never blocks the others.
 * All calls return at once (busy_timeout 0): waiting happens in JS, never on the event loop.
 */
export class Lease {
  private holder: Database.Database | undefined

  constructor (readonly path: string) {}

  get held (): boolean {
    return this.holder !== undefined
  }

  /** Takes the lock if it is free; true when this process now holds it. */
  tryAcquire (): boolean {
    if (this.holder) return true
    const db = new Database(this.path)
    try {
      db.pragma('busy_timeout = 0')
      // In exclusive locking mode the lock outlives the transaction: it is released only by close().
      db.pragma('locking_mode = EXCLUSIVE')
      db.exec('BEGIN EXCLUSIVE')
      db.exec('COMMIT')
      this.holder = db
      return true
    } catch (err) {
      db.close()
      if ((err as { code?: string }).code === 'SQLITE_BUSY') return false
      throw err
    }
  }

  /** Waits for the lock, polling, until it is free or `signal` aborts (then rejects with an AbortError). */
  async acquire (signal: AbortSignal, retryMs = 50): Promise<void> {
    while (!this.tryAcquire()) {
      await sleep(retryMs, undefined, { signal })
    }
  }

  release (): void {
    this.holder?.close()
    this.holder = undefined
  }
}
