"""Pipeline stages: adapters -> validation -> static removal -> clip cutting -> catalog."""
