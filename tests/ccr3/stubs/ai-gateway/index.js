"use strict";
// Stand-in: CCR 3.1.1 uses the gateway bundled in its dist/main/, never this package.
throw new Error("@the-next-ai/ai-gateway is a local install stub (tests/ccr3/stubs); it has no implementation");
