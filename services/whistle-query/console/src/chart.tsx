// ECharts, tree-shaken: only the charts and components the console uses, canvas renderer.
import * as echarts from "echarts/core";
import { BarChart, LineChart, MapChart, PieChart, ScatterChart } from "echarts/charts";
import {
  GridComponent,
  TooltipComponent,
  LegendComponent,
  VisualMapComponent,
  TitleComponent,
  GraphicComponent,
  GeoComponent,
} from "echarts/components";
import { CanvasRenderer } from "echarts/renderers";
import { useEffect, useRef } from "preact/hooks";

echarts.use([BarChart, LineChart, MapChart, PieChart, ScatterChart, GridComponent, TooltipComponent, LegendComponent, VisualMapComponent, TitleComponent, GraphicComponent, GeoComponent, CanvasRenderer]);

export { echarts };

export const FONT = '"PingFang SC","Microsoft YaHei","Noto Sans CJK SC","WenQuanYi Micro Hei",sans-serif';

export function Chart(props: {
  option: echarts.EChartsCoreOption;
  testid?: string;
  onClick?: (params: any) => void;
  /** After each render has finished (positions are final): for overlays drawn in the DOM. */
  onFinished?: (chart: echarts.ECharts) => void;
  style?: string;
}) {
  const el = useRef<HTMLDivElement>(null);
  const inst = useRef<echarts.ECharts | null>(null);
  const click = useRef(props.onClick);
  click.current = props.onClick;
  const finished = useRef(props.onFinished);
  finished.current = props.onFinished;

  useEffect(() => {
    const c = echarts.init(el.current!, undefined, { renderer: "canvas" });
    inst.current = c;
    c.on("click", (p) => click.current?.(p));
    c.on("finished", () => finished.current?.(c));
    const ro = new ResizeObserver(() => c.resize());
    ro.observe(el.current!);
    return () => {
      ro.disconnect();
      c.dispose();
      inst.current = null;
    };
  }, []);

  useEffect(() => {
    inst.current?.setOption({ textStyle: { fontFamily: FONT }, animationDuration: 300, ...props.option }, { notMerge: true, lazyUpdate: true });
  }, [props.option]);

  return <div class="chart" ref={el} data-testid={props.testid} style={props.style} />;
}
