"""Configuration and planning: the composed hydra config validated into typed objects (every
section, the network, the scenario), algorithm plug-ins, and the plan of a run's nodes."""
