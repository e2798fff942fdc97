// The command screen's scale. The wall is designed in pixels of a 1920×1080 screen; `px` is how many
// CSS pixels one design pixel takes in this window (1 at 1920×1080, 2 at 3840×2160), so text and
// charts keep their proportion at any resolution. A window much smaller than the wall (a laptop)
// gets a fixed scale and the two-column layout that scrolls: shrinking the wall further would make
// its text unreadable, and squeezing it would collapse panels.
import { createContext } from "preact";
import { useEffect, useState } from "preact/hooks";

export type Layout = "wall" | "laptop";
export interface Scale {
  layout: Layout;
  /** CSS pixels per design pixel. */
  px: number;
}

/** Below this share of 1920×1080 the wall would shrink its 18-px text under 14 px: laptop layout. */
const WALL_MIN = 0.8;
const LAPTOP_PX = 0.8;

export function scaleFor(width: number, height: number): Scale {
  const s = Math.min(width / 1920, height / 1080);
  return s >= WALL_MIN ? { layout: "wall", px: s } : { layout: "laptop", px: LAPTOP_PX };
}

/** The window's scale, following resizes. */
export function useScale(): Scale {
  const [scale, setScale] = useState(() => scaleFor(innerWidth, innerHeight));
  useEffect(() => {
    const onResize = () => {
      const next = scaleFor(innerWidth, innerHeight);
      setScale((s) => (s.layout === next.layout && s.px === next.px ? s : next));
    };
    addEventListener("resize", onResize);
    return () => removeEventListener("resize", onResize);
  }, []);
  return scale;
}

export const ScaleContext = createContext<Scale>({ layout: "wall", px: 1 });
