// The live feed: WatchEvents over gRPC-web, reconnecting with backoff and resuming after the last
// sequence seen (no loss, no repeat). A Gap tells the owner to reload its panels.
import { cc, isAbort } from "./api";
import type { SequencedEvent, Gap } from "./gen/whistle/v1/command_center_pb.js";

export type FeedStatus = "connecting" | "live" | "reconnecting";

export interface FeedHandlers {
  onEvent: (e: SequencedEvent) => void;
  onGap: (g: Gap) => void;
  onStatus: (s: FeedStatus, detail?: string) => void;
}

export class EventFeed {
  private ac = new AbortController();
  private lastSeq = 0n;
  private stopped = false;

  constructor(private areaCode: string, private h: FeedHandlers) {}

  get lastSequence(): bigint {
    return this.lastSeq;
  }

  start() {
    void this.loop();
    return this;
  }

  stop() {
    this.stopped = true;
    this.ac.abort();
  }

  private async loop() {
    let backoff = 500;
    this.h.onStatus("connecting");
    while (!this.stopped) {
      try {
        const stream = cc.watchEvents(
          { areaCode: this.areaCode, sinceSequence: this.lastSeq },
          {
            signal: this.ac.signal,
            onHeader: () => {
              backoff = 500;
              this.h.onStatus("live");
            },
          },
        );
        for await (const r of stream) {
          if (this.stopped) return;
          this.h.onStatus("live");
          if (r.item.case === "event") {
            const seq = r.item.value.sequence;
            if (seq <= this.lastSeq) continue; // never show one twice
            this.lastSeq = seq;
            this.h.onEvent(r.item.value);
          } else if (r.item.case === "gap") {
            const next = r.item.value.nextSequence;
            if (next > 0n && next - 1n > this.lastSeq) this.lastSeq = next - 1n;
            this.h.onGap(r.item.value);
          }
        }
        // The server ended the stream (e.g. shutdown): resume elsewhere.
        if (this.stopped) return;
        this.h.onStatus("reconnecting");
      } catch (e) {
        if (this.stopped || isAbort(e)) return;
        this.h.onStatus("reconnecting", e instanceof Error ? e.message : String(e));
      }
      await new Promise((r) => setTimeout(r, backoff + Math.random() * 250));
      backoff = Math.min(backoff * 2, 15000);
    }
  }
}
