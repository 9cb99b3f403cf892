# Broken on purpose: it calls the package set with an argument the set does not take.
import ../../. { overlays = [ ]; }
