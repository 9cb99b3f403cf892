{
  gnu = [
    "https://ftpmirror.gnu.org/"
    "https://ftp.gnu.org/pub/gnu/"
  ];
  sourceforge = [
    "https://downloads.sourceforge.net/"
    "https://netcologne.dl.sourceforge.net/sourceforge/"
  ];
}
