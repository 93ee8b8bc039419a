"""`python -m providers.simulator`: the simulator on its default port."""

from providers.simulator.app import main

main()
