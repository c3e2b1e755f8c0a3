// TEMP STUB
use super::*;
pub fn frame_len(_buf: &[u8], _max_len: usize) -> Result<Option<usize>, DecodeError> {
    unimplemented!()
}
pub fn decode_message(_frame: &[u8], _cx: &SessionCodec) -> Result<Message, DecodeError> {
    unimplemented!()
}
