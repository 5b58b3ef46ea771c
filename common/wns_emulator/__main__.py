"""Run the WNS emulator on its own: `python -m common.wns_emulator` (or `tocsin emulator`)."""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web

from common import logs
from common.wns_emulator.app import init_control_app, init_wns_app, server_ssl_context
from common.wns_emulator.state import EmulatorState
from common.wns_emulator.tls import ensure_tls_files
from config.settings import EmulatorSettings


async def serve(settings: EmulatorSettings) -> None:
    log = structlog.get_logger("tocsin.emulator")
    tls = ensure_tls_files(settings.state_dir)
    state = EmulatorState.load(settings.state_dir, settings.token_lifetime_seconds,
                               settings.channel_lifetime_days)
    for app in settings.apps:
        state.add_app(app)
    state.fast = settings.fast
    runners = [web.AppRunner(init_wns_app(state), access_log=None),
               web.AppRunner(init_control_app(state), access_log=None)]
    for runner in runners:
        await runner.setup()
    await web.TCPSite(runners[0], settings.host, settings.https_port,
                      ssl_context=server_ssl_context(tls)).start()
    await web.TCPSite(runners[1], settings.host, settings.control_port).start()
    log.info("emulator listening", https_port=settings.https_port,
             control_port=settings.control_port, ca_file=str(tls.ca_cert))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for runner in runners:
        await runner.cleanup()


def main() -> None:
    settings = EmulatorSettings()
    logs.configure("emulator", settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
