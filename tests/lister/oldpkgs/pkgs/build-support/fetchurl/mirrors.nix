{ gnu = [ "https://ftpmirror.gnu.org/" ]; }
