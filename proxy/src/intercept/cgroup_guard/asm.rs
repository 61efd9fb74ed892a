//! Just enough of an eBPF assembler for the guard's two programs: the instructions they use,
//! and forward jumps to named labels (resolved by `finish`).
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum R {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    Fp,
}

#[derive(Debug, Clone, Copy)]
pub enum Size {
    B = 0x10,
    H = 0x08,
    W = 0x00,
}

#[derive(Debug, Clone, Copy)]
pub enum Cond {
    Eq = 0x10,
    Ne = 0x50,
}

pub const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
pub const HELPER_SKB_LOAD_BYTES_RELATIVE: i32 = 68;
const BPF_LDX: u8 = 0x01;
const BPF_ST: u8 = 0x02;
const BPF_STX: u8 = 0x03;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_ALU64: u8 = 0x07;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_ADD: u8 = 0x00;
const BPF_AND: u8 = 0x50;
const BPF_LSH: u8 = 0x60;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_END: u8 = 0xd0;
const BPF_TO_BE: u8 = 0x08;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;
const BPF_JA: u8 = 0x00;
const BPF_PSEUDO_MAP_FD: u8 = 1;

#[derive(Default)]
pub struct Asm {
    insns: Vec<u64>,
    labels: HashMap<&'static str, usize>,
    /// Jumps to patch: instruction index → label.
    fixups: Vec<(usize, &'static str)>,
}

fn insn(code: u8, dst: R, src: R, off: i16, imm: i32) -> u64 {
    let regs = (dst as u8 & 0x0f) | ((src as u8 & 0x0f) << 4);
    let (off, imm) = (off.to_le_bytes(), imm.to_le_bytes());
    u64::from_le_bytes([code, regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3]])
}

impl Asm {
    fn emit(&mut self, i: u64) {
        self.insns.push(i);
    }

    pub fn label(&mut self, name: &'static str) {
        let previous = self.labels.insert(name, self.insns.len());
        assert!(previous.is_none(), "label {name} defined twice");
    }

    /// `dst = src` (64-bit).
    pub fn mov(&mut self, dst: R, src: R) {
        self.emit(insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0));
    }

    /// `dst = imm` (64-bit, sign-extended).
    pub fn mov_imm(&mut self, dst: R, imm: i32) {
        self.emit(insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, R::R0, 0, imm));
    }

    pub fn add_imm(&mut self, dst: R, imm: i32) {
        self.emit(insn(BPF_ALU64 | BPF_ADD | BPF_K, dst, R::R0, 0, imm));
    }

    pub fn add(&mut self, dst: R, src: R) {
        self.emit(insn(BPF_ALU64 | BPF_ADD | BPF_X, dst, src, 0, 0));
    }

    pub fn and_imm(&mut self, dst: R, imm: i32) {
        self.emit(insn(BPF_ALU64 | BPF_AND | BPF_K, dst, R::R0, 0, imm));
    }

    pub fn lsh_imm(&mut self, dst: R, imm: i32) {
        self.emit(insn(BPF_ALU64 | BPF_LSH | BPF_K, dst, R::R0, 0, imm));
    }

    pub fn rsh_imm(&mut self, dst: R, imm: i32) {
        self.emit(insn(BPF_ALU64 | BPF_RSH | BPF_K, dst, R::R0, 0, imm));
    }

    pub fn rsh(&mut self, dst: R, src: R) {
        self.emit(insn(BPF_ALU64 | BPF_RSH | BPF_X, dst, src, 0, 0));
    }

    /// `dst = htobe16(dst)`: a port read from a packet, to the number it is.
    pub fn be16(&mut self, dst: R) {
        self.emit(insn(BPF_ALU | BPF_END | BPF_TO_BE, dst, R::R0, 0, 16));
    }

    /// `dst = *(size *)(src + off)`.
    pub fn load(&mut self, size: Size, dst: R, src: R, off: i16) {
        self.emit(insn(BPF_LDX | BPF_MEM | size as u8, dst, src, off, 0));
    }

    /// `*(size *)(dst + off) = src`.
    pub fn store(&mut self, size: Size, dst: R, off: i16, src: R) {
        self.emit(insn(BPF_STX | BPF_MEM | size as u8, dst, src, off, 0));
    }

    /// `*(u32 *)(dst + off) = imm`.
    pub fn store_imm32(&mut self, dst: R, off: i16, imm: i32) {
        self.emit(insn(BPF_ST | BPF_MEM | Size::W as u8, dst, R::R0, off, imm));
    }

    /// `dst = the map behind fd` (the kernel replaces the fd by the map at load).
    pub fn load_map(&mut self, dst: R, fd: i32) {
        self.emit(insn(0x18, dst, R::R0, 0, fd) | ((BPF_PSEUDO_MAP_FD as u64) << 12));
        self.emit(0);
    }

    pub fn call(&mut self, helper: i32) {
        self.emit(insn(BPF_JMP | BPF_CALL, R::R0, R::R0, 0, helper));
    }

    pub fn exit(&mut self) {
        self.emit(insn(BPF_JMP | BPF_EXIT, R::R0, R::R0, 0, 0));
    }

    pub fn jump(&mut self, to: &'static str) {
        self.fixups.push((self.insns.len(), to));
        self.emit(insn(BPF_JMP | BPF_JA, R::R0, R::R0, 0, 0));
    }

    /// `if dst <cond> imm goto to` (64-bit compare).
    pub fn jump_if(&mut self, cond: Cond, dst: R, imm: i32, to: &'static str) {
        self.fixups.push((self.insns.len(), to));
        self.emit(insn(BPF_JMP | cond as u8 | BPF_K, dst, R::R0, 0, imm));
    }

    /// `if (u32)dst <cond> imm goto to` (32-bit compare: marks and protocols are u32).
    pub fn jump32_if(&mut self, cond: Cond, dst: R, imm: i32, to: &'static str) {
        self.fixups.push((self.insns.len(), to));
        self.emit(insn(BPF_JMP32 | cond as u8 | BPF_K, dst, R::R0, 0, imm));
    }

    /// The program, every jump pointed at its label (all jumps go forward).
    pub fn finish(self) -> Vec<u64> {
        let mut insns = self.insns;
        for (at, label) in self.fixups {
            let target = *self.labels.get(label).unwrap_or_else(|| panic!("undefined label {label}"));
            assert!(target > at, "jump to {label} goes backward");
            let off = i16::try_from(target - at - 1).expect("jump within range");
            let bytes = off.to_le_bytes();
            insns[at] = (insns[at] & !0xffff_0000) | ((u16::from_le_bytes(bytes) as u64) << 16);
        }
        insns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        let mut a = Asm::default();
        a.mov_imm(R::R0, 1); // b7 00 0000 01000000
        a.jump_if(Cond::Ne, R::R2, 6, "out"); // 55 02 0100 06000000
        a.load(Size::H, R::R3, R::Fp, -62); // 69 a3 c2ff 00000000
        a.label("out");
        a.exit(); // 95 00 0000 00000000
        let p = a.finish();
        assert_eq!(p[0].to_le_bytes(), [0xb7, 0x00, 0x00, 0x00, 0x01, 0, 0, 0]);
        assert_eq!(p[1].to_le_bytes(), [0x55, 0x02, 0x01, 0x00, 0x06, 0, 0, 0]);
        assert_eq!(p[2].to_le_bytes(), [0x69, 0xa3, 0xc2, 0xff, 0, 0, 0, 0]);
        assert_eq!(p[3].to_le_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_map_load_takes_two_slots_with_the_pseudo_source() {
        let mut a = Asm::default();
        a.load_map(R::R1, 7);
        let p = a.finish();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].to_le_bytes(), [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(p[1], 0);
    }
}
