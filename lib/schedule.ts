/**
 * Runs a job every `interval` ms, re-arming only after the previous run has finished, so runs never overlap or
 * pile up however long one takes. Timers are unref()'d: a schedule never keeps the process alive on its own.
 */
export class Schedule {
  private timer: NodeJS.Timeout | undefined
  private stopped = true
  private nextAt: Date | null = null

  constructor (private readonly interval: number, private readonly job: () => Promise<void>) {}

  start (firstDelay = this.interval): void {
    this.stopped = false
    this.arm(firstDelay)
  }

  stop (): void {
    this.stopped = true
    clearTimeout(this.timer)
    this.timer = undefined
    this.nextAt = null
  }

  get nextRunAt (): Date | null {
    return this.nextAt
  }

  private arm (delay: number): void {
    this.nextAt = new Date(Date.now() + delay)
    this.timer = setTimeout(() => this.tick(), delay)
    this.timer.unref()
  }

  private tick (): void {
    this.timer = undefined
    this.nextAt = null
    // The job reports its own failures and never rejects; a schedule keeps going whatever one run did.
    this.job().finally(() => {
      if (!this.stopped) this.arm(this.interval)
    })
  }
}
