# cmake -DIN=file -DOUT=file.inc -P embed.cmake: the bytes of IN as a C array initializer
# (hex, then a terminating 0), for `constexpr char name[] = {\n#include "file.inc"\n};`.
file(READ ${IN} content HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," content "${content}")
file(WRITE ${OUT} "${content}0x00\n")
