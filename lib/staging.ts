import { randomBytes } from 'node:crypto'
import { LocalDestination } from './destinations/local'
import { ensurePrivateDirectory } from './durable-fs'

/**
 * The local directory where each snapshot is taken before it is published, and where offsite backups are
 * downloaded to be read: the first local destination (a snapshot is then published there by a rename), or else a
 * private directory of its own (the `staging` option).
 */
export class Staging {
  /** The directory as a destination: its temp names and leftover cleanup are the same. */
  readonly directory: LocalDestination

  constructor (path: string, readonly primary: LocalDestination | undefined) {
    this.directory = primary ?? new LocalDestination(path)
  }

  get path (): string {
    return this.directory.directory
  }

  /**
   * Creates the directory (again, if someone removed it since). A destination keeps the mode its owner gave it;
   * a private staging directory must be ours and 0700, since it may sit in a shared temp directory.
   */
  async ensure (): Promise<void> {
    if (this.primary) await this.primary.ensureDirectory()
    else await ensurePrivateDirectory(this.path)
  }

  /** Where the snapshot of backup `id` is taken. */
  snapshotPath (id: string): string {
    return this.directory.tempPath(id, 'sqlite')
  }

  /** A fresh path for a download of backup `id`. */
  downloadPath (id: string): string {
    return this.directory.tempPath(`${id}-${randomBytes(4).toString('hex')}`, 'download')
  }
}
