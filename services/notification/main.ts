import { runService } from "../platform/lifecycle.js";
import { build } from "./src/build.js";
import { loadConfig } from "./src/config.js";

await runService("notification", loadConfig, (config, logger) => build({ ...config, logger }));
