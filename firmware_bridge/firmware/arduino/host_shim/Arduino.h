/*
 * Arduino.h - minimal host shim so kdp_controller.ino compiles and runs on a PC
 * (`make sketch-check`). Only what the sketch uses; time is simulated by shim_main.cpp.
 */
#ifndef KDP_HOST_SHIM_ARDUINO_H
#define KDP_HOST_SHIM_ARDUINO_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HIGH 1
#define LOW 0
#define INPUT 0
#define OUTPUT 1
#define INPUT_PULLUP 2
enum { A0 = 14, A1, A2, A3, A4, A5 };

void pinMode(uint8_t pin, uint8_t mode);
void digitalWrite(uint8_t pin, uint8_t value);
int digitalRead(uint8_t pin);
int analogRead(uint8_t pin);
void analogWrite(uint8_t pin, int value);
unsigned long micros(void);
unsigned long millis(void);
long random(long max);

class ShimSerial {
  public:
    void begin(unsigned long baud);
    int available(void);
    int read(void);
    int availableForWrite(void);
    size_t write(const uint8_t *data, size_t len);
};
extern ShimSerial Serial;

void setup(void);
void loop(void);

#endif
