/**
 * The simulated devices of the web demo: four Kite clients in the demo's process, connected to
 * its broker over TCP, publishing at QoS 0, 1 and 2 at rates that change over time, so that the
 * page has something to show (a greenhouse, a press with a rate that swells and a burst every
 * 20 seconds, a van, a door).
 *
 * @module
 */

import { connect, type MqttClient, type QoS } from "../../mod.ts";

/** The running devices. */
export interface Devices {
  /** Their client identifiers. */
  names: string[];
  /** Stops publishing and disconnects them. */
  stop(): Promise<void>;
}

/** One topic a device publishes to, and when. */
interface Feed {
  topic: string;
  qos: QoS;
  retain: boolean;
  /** Messages per second at `seconds` since the start. */
  rate(seconds: number): number;
  /** The next payload. */
  next(): string;
  /** Messages owed: the rate's integral not yet published. */
  owed: number;
}

/** One device: a client and what it publishes. */
interface Device {
  name: string;
  feeds: Feed[];
}

const TICK_MS = 100;

/** A value that wanders between `min` and `max` by at most `step` each time. */
function walk(start: number, min: number, max: number, step: number): () => number {
  let value = start;
  return () => {
    value = Math.min(max, Math.max(min, value + (Math.random() * 2 - 1) * step));
    return value;
  };
}

/** A feed with a constant rate. */
function every(
  seconds: number,
  topic: string,
  qos: QoS,
  retain: boolean,
  next: () => string,
): Feed {
  return { topic, qos, retain, rate: () => 1 / seconds, next, owed: 1 };
}

function devices(): Device[] {
  const temperature = walk(21.5, 17, 28, 0.15);
  const humidity = walk(62, 40, 85, 0.6);
  const rpm = walk(1450, 1380, 1520, 6);
  const vibration = walk(0.03, 0.005, 0.12, 0.01);
  const latitude = walk(52.52, 52.45, 52.58, 0.0008);
  const longitude = walk(13.405, 13.3, 13.5, 0.0008);
  const speed = walk(42, 0, 70, 4);
  const states = ["running", "running", "running", "cooling", "running", "maintenance"];
  let state = 0;
  let open = false;
  return [
    {
      name: "greenhouse-1",
      feeds: [
        every(0.5, "greenhouse/1/temperature", 0, true, () => `${temperature().toFixed(1)} °C`),
        every(1, "greenhouse/1/humidity", 0, true, () => `${humidity().toFixed(0)} %`),
      ],
    },
    {
      name: "press-7",
      feeds: [
        {
          topic: "factory/press-7/rpm",
          qos: 1,
          retain: false,
          // Swells from 2 to 22 messages a second and back, over 45 seconds.
          rate: (seconds) => 12 + 10 * Math.sin((2 * Math.PI * seconds) / 45),
          next: () => `${Math.round(rpm())}`,
          owed: 1,
        },
        {
          topic: "factory/press-7/vibration",
          qos: 0,
          retain: false,
          // A burst: 80 messages in the first second of every 20.
          rate: (seconds) => (seconds % 20 < 1 ? 80 : 0),
          next: () => `${vibration().toFixed(3)} g`,
          owed: 0,
        },
        every(12, "factory/press-7/state", 2, true, () => {
          state = (state + 1) % states.length;
          return JSON.stringify({ state: states[state], at: new Date().toISOString() });
        }),
      ],
    },
    {
      name: "van-12",
      feeds: [
        every(1, "fleet/van-12/position", 1, false, () =>
          JSON.stringify({
            lat: Number(latitude().toFixed(5)),
            lon: Number(longitude().toFixed(5)),
            kmh: Math.round(speed()),
          })),
      ],
    },
    {
      name: "door-3",
      feeds: [
        every(7, "building/door-3/open", 2, true, () => `${open = !open}`),
      ],
    },
  ];
}

/** A publish that fails (the broker stopping under it) has nothing to tell the demo. */
function ignore(): void {}

/**
 * Connects the devices to `url` and starts publishing.
 *
 * @param url The broker, such as `mqtt://127.0.0.1:1883`.
 * @returns The running devices.
 */
export async function startDevices(url: string): Promise<Devices> {
  const list = devices();
  const clients: MqttClient[] = await Promise.all(
    list.map((device) =>
      connect(url, {
        clientId: device.name,
        protocolVersion: 5,
        will: { topic: `devices/${device.name}`, payload: "offline", qos: 1, retain: true },
      })
    ),
  );
  await Promise.all(
    clients.map((client, i) =>
      client.publish(`devices/${list[i].name}`, "online", { qos: 1, retain: true })
    ),
  );
  const started = Date.now();
  let last = started;
  const timer = setInterval(() => {
    const now = Date.now();
    const seconds = (now - started) / 1000;
    const elapsed = (now - last) / 1000;
    last = now;
    list.forEach((device, i) => {
      for (const feed of device.feeds) {
        feed.owed += feed.rate(seconds) * elapsed;
        for (; feed.owed >= 1; feed.owed--) {
          clients[i].publish(feed.topic, feed.next(), { qos: feed.qos, retain: feed.retain })
            .catch(ignore);
        }
      }
    });
  }, TICK_MS);
  return {
    names: list.map((device) => device.name),
    async stop() {
      clearInterval(timer);
      await Promise.all(
        clients.map(async (client, i) => {
          await client.publish(`devices/${list[i].name}`, "offline", { qos: 1, retain: true })
            .catch(ignore);
          await client.disconnect();
        }),
      );
    },
  };
}
