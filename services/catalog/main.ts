import { runService } from "#platform";
import { build } from "./src/build.js";
import { loadConfig } from "./src/config.js";

await runService("catalog", loadConfig, (config, logger) => build({ ...config, logger }));
