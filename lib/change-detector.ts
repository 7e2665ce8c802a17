import Database from 'better-sqlite3'

/**
 * Tells in O(1), without reading the file, whether another connection committed since a given point:
 * `PRAGMA data_version` on a long-lived connection of our own changes whenever any other connection commits.
 */
export class ChangeDetector {
  private readonly db: Database.Database

  constructor (path: string) {
    this.db = new Database(path, { readonly: true, fileMustExist: true })
    // Never wait on the event loop: a busy database counts as "maybe changed" and the worker does the waiting.
    this.db.pragma('busy_timeout = 0')
  }

  /** The current data version, or `undefined` when the database is locked and it cannot be told. */
  version (): number | undefined {
    try {
      return this.db.pragma('data_version', { simple: true }) as number
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_BUSY') return undefined
      throw err
    }
  }

  journalMode (): string {
    return this.db.pragma('journal_mode', { simple: true }) as string
  }

  close (): void {
    this.db.close()
  }
}
