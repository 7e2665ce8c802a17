// The follower's own connections to the database: two readers that take turns holding a WAL read lock, so that
// SQLite reuses no frame before the follower has read it; one that takes the write lock for a moment; one that
// checkpoints.
import { statSync } from 'node:fs'
import Database from 'better-sqlite3'

const READER_BUSY_MS = 100

export class FollowerConnections {
  readonly readers: [Database.Database, Database.Database]
  readonly writeLock: Database.Database
  readonly checkpointer: Database.Database
  /** The database file's device and inode when the connections were opened. */
  private readonly identity: string

  constructor (private readonly databasePath: string) {
    const connect = (): Database.Database => {
      const db = new Database(databasePath, { fileMustExist: true })
      db.pragma(`busy_timeout = ${READER_BUSY_MS}`)
      // A connection that only reads pages once needs no cache.
      db.pragma('cache_size = -64')
      return db
    }
    this.readers = [connect(), connect()]
    this.writeLock = connect()
    this.checkpointer = connect()
    this.identity = fileIdentity(databasePath)
  }

  /** Why the database file is no longer the one these connections opened, or undefined when it still is. */
  fileProblem (): string | undefined {
    let now: string
    try {
      now = fileIdentity(this.databasePath)
    } catch {
      return 'the database file is gone'
    }
    return now === this.identity ? undefined : 'the database file was replaced by another file'
  }

  /** Takes a read lock with reader `index`; false when a writer holds the database too long (SQLITE_BUSY). */
  beginRead (index: number): boolean {
    const db = this.readers[index]
    try {
      db.exec('BEGIN')
      // A deferred transaction takes its snapshot (and its WAL read lock) at the first read.
      db.prepare('SELECT count(*) FROM sqlite_schema').get()
      return true
    } catch (err) {
      if (db.inTransaction) db.exec('ROLLBACK')
      if ((err as { code?: string }).code === 'SQLITE_BUSY') return false
      throw err
    }
  }

  endRead (index: number): void {
    const db = this.readers[index]
    if (db.inTransaction) db.exec('COMMIT')
  }

  /** Lets every lock go and closes every connection. */
  close (): void {
    for (const db of [...this.readers, this.writeLock, this.checkpointer]) {
      if (db.inTransaction) db.exec('ROLLBACK')
      db.close()
    }
  }
}

function fileIdentity (path: string): string {
  const stats = statSync(path, { bigint: true })
  return `${stats.dev}:${stats.ino}`
}
