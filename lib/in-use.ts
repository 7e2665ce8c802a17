/** Backups being read by verify, restore or a drill: retention leaves them for its next pass. */
export class BackupsInUse {
  private readonly readers = new Map<string, number>()

  has (id: string): boolean {
    return this.readers.has(id)
  }

  /** Marks backup `id` as being read while `work` runs. */
  async during<T> (id: string, work: () => Promise<T>): Promise<T> {
    this.readers.set(id, (this.readers.get(id) ?? 0) + 1)
    try {
      return await work()
    } finally {
      const count = this.readers.get(id)! - 1
      if (count === 0) this.readers.delete(id)
      else this.readers.set(id, count)
    }
  }
}
